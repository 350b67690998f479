"""Factories shared by several test modules: one section per stage, appended by its owner."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bertforge.errors import BertforgeError
from bertforge.ingest.params import IngestParams, SourceParams
from bertforge.ingest.pipeline import ingest
from bertforge.ingest.sources import resolve_sources
from bertforge.shards import iter_batches
from tests.support import REPO_ROOT

# --- ingest ------------------------------------------------------------------------------------

INGEST_PARAMS = {
    "text_column": "text",
    "min_document_chars": 20,
    "min_sentences": 1,
    "max_document_chars": 10_000,
    "language": "en",
    "holdout_fraction": 0.2,
    "seed": 0,
    "num_proc": 1,
    "rows_per_shard": 1000,
}
"""Every `ingest:` key but `sources`, small enough for a test."""


def ingest_params(*sources: dict, **overrides) -> IngestParams:
    """IngestParams reading `sources` (SourceParams fields), INGEST_PARAMS for the rest."""
    values = {**INGEST_PARAMS, **overrides}
    return IngestParams(sources=tuple(SourceParams(**source) for source in sources), **values)


def numbered_document(index: int) -> str:
    """A distinct two-line, three-sentence document for each index."""
    return (
        f"Document number {index} begins here. It talks about topic {index * 7 % 13}, "
        f"at length.\nA second line follows with {index} apples."
    )


def write_txt(path: Path, documents: list[str]) -> Path:
    """A .txt source: the documents separated by blank lines."""
    path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    return path


def run_ingest(params: IngestParams, output: Path) -> tuple[dict, list[dict], list[dict]]:
    """Ingest into `output`: the metrics, then the train and held-out rows."""
    metrics = ingest(params, resolve_sources(params), output, show_progress=False)
    sides = [
        [row for batch in iter_batches(output / side) for row in batch.to_pylist()]
        for side in ("train", "heldout")
    ]
    return metrics, sides[0], sides[1]


def ingest_error(params: IngestParams, tmp_path: Path) -> str:
    """The message of the BertforgeError that ingesting raises, checked to be one line."""
    with pytest.raises(BertforgeError) as error:
        run_ingest(params, tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message
    return message


INGEST_STAGE = REPO_ROOT / "stages" / "ingest.py"

INGEST_STAGE_PARAMS_YAML = """\
ingest:
  sources:
    - path: corpus/*.txt
  text_column: text
  min_document_chars: 20
  min_sentences: 1
  max_document_chars: 100000
  language: en
  holdout_fraction: 0.2
  seed: 0
  num_proc: {num_proc}
  rows_per_shard: 7
"""


def make_ingest_project(root: Path, num_proc: int = 1) -> Path:
    """A project directory with params.yaml and corpus/a.txt (60 documents) for stages/ingest.py."""
    (root / "corpus").mkdir(parents=True)
    documents = [
        f"Document {index} opens with a sentence. Then it says {index * 3} more things."
        for index in range(60)
    ]
    (root / "corpus" / "a.txt").write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    (root / "params.yaml").write_text(
        INGEST_STAGE_PARAMS_YAML.format(num_proc=num_proc), encoding="utf-8"
    )
    return root


def run_ingest_stage(root: Path) -> subprocess.CompletedProcess:
    """stages/ingest.py as DVC runs it: a subprocess in the project directory."""
    return subprocess.run(
        [sys.executable, str(INGEST_STAGE)], cwd=root, capture_output=True, text=True, timeout=300
    )


def stage_error_lines(result: subprocess.CompletedProcess) -> list[str]:
    """The stage's own error lines (MLflow may log INFO lines to stderr before them)."""
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ")
    return [line for line in lines if line.startswith("error")]
