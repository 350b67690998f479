"""stages/vocab.py as DVC runs it: a subprocess writing data/tokenizer, metrics and an MLflow
run, or failing in one line and leaving the previous tokenizer intact."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bertforge.io import hash_path
from bertforge.params import load_section
from bertforge.tokenizer.files import write_tokenizer
from bertforge.tokenizer.pipeline import BERT_SPECIAL_TOKENS
from bertforge.vocab.params import VocabParams
from bertforge.vocab.train import train_tokenizer
from tests.factories import (
    VOCAB_HELDOUT_DOCUMENTS,
    VOCAB_TRAIN_DOCUMENTS,
    copy_tokenizer,
    vocab_params,
    write_documents,
    write_ingested,
    write_trained_tokenizer,
)
from tests.support import REPO_ROOT, stage_env


@pytest.fixture(scope="module")
def uncased_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tokenizer as a previous run of the stage left it."""
    root = write_ingested(
        tmp_path_factory.mktemp("ingested"), VOCAB_TRAIN_DOCUMENTS, VOCAB_HELDOUT_DOCUMENTS
    )
    directory = tmp_path_factory.mktemp("uncased")
    return write_trained_tokenizer(directory, root / "data/ingested/train", vocab_params())


STAGE = REPO_ROOT / "stages" / "vocab.py"


def write_params(root: Path, **overrides: object) -> None:
    section = {
        "vocab_size": 500,
        "lowercase": True,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "min_frequency": 1,
        "limit_alphabet": 400,
        "special_tokens": list(BERT_SPECIAL_TOKENS),
        "max_unk_rate": 1.0,  # the fixture's held-out documents have characters training lacks
    }
    section.update(overrides)
    (root / "params.yaml").write_text(json.dumps({"vocab": section}), encoding="utf-8")


def run_vocab_stage(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(STAGE)], cwd=root, env=stage_env(), capture_output=True, text=True
    )


def test_stage_writes_tokenizer_metrics_and_mlflow_run_identical_to_in_process_training(
    tmp_path: Path, isolated_mlflow: Path
) -> None:
    import mlflow

    write_ingested(tmp_path, VOCAB_TRAIN_DOCUMENTS, VOCAB_HELDOUT_DOCUMENTS)
    write_params(tmp_path)
    result = run_vocab_stage(tmp_path)
    assert result.returncode == 0, result.stderr
    output = tmp_path / "data/tokenizer"
    metrics = json.loads((tmp_path / "metrics/vocab.json").read_text(encoding="utf-8"))
    assert metrics["vocab_size"] == len((output / "vocab.txt").read_text().splitlines())
    assert 0 < metrics["unk_rate"] < 1 and metrics["tokens_per_word"] >= 1

    params = load_section(VocabParams, "vocab", tmp_path / "params.yaml")
    in_process = tmp_path / "in_process"
    in_process.mkdir()
    write_tokenizer(train_tokenizer(tmp_path / "data/ingested/train", params), in_process, params)
    for name in ("vocab.txt", "tokenizer.json"):
        assert (output / name).read_bytes() == (in_process / name).read_bytes()

    client = mlflow.MlflowClient(f"sqlite:///{isolated_mlflow}")
    experiment = client.get_experiment_by_name("bertforge")
    (run,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`bertforge.stage` = 'vocab'"
    )
    assert run.data.metrics["vocab_size"] == metrics["vocab_size"]
    assert run.data.params["vocab.vocab_size"] == "500"
    artifacts = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "tokenizer")}
    assert {"vocab.txt", "tokenizer.json", "tokenizer_config.json"} <= artifacts


@pytest.mark.parametrize(
    ("breakage", "message"),
    [
        ("vocab_size below alphabet", "params.yaml: vocab.vocab_size must exceed"),
        ("no training split", "data/ingested/train: training documents not found"),
        ("no training documents", "data/ingested/train: no training documents"),
        ("unk rate over the limit", "held-out tokens are [UNK], over vocab.max_unk_rate 0.0"),
    ],
)
def test_stage_failure_is_one_line_exit_2_and_leaves_previous_tokenizer_intact(
    tmp_path: Path, uncased_dir: Path, breakage: str, message: str
) -> None:
    write_ingested(tmp_path, VOCAB_TRAIN_DOCUMENTS, VOCAB_HELDOUT_DOCUMENTS)
    write_params(tmp_path)
    previous = copy_tokenizer(uncased_dir, tmp_path / "data/tokenizer")
    before = hash_path(previous)
    if breakage == "vocab_size below alphabet":
        write_params(tmp_path, vocab_size=100)
    elif breakage == "unk rate over the limit":
        write_params(tmp_path, max_unk_rate=0.0)
    elif breakage == "no training split":
        for shard in (tmp_path / "data/ingested/train").iterdir():
            shard.unlink()
        (tmp_path / "data/ingested/train").rmdir()
    else:
        (tmp_path / "data/ingested/train/part-00000.parquet").unlink()
        write_documents(tmp_path / "data/ingested/train", [])
    result = run_vocab_stage(tmp_path)
    assert result.returncode == 2
    progress = ("vocab: train", "vocab: alphabet", "vocab: held-out")  # tqdm bars before the error
    lines = [line for line in result.stderr.splitlines() if line and not line.startswith(progress)]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert hash_path(previous) == before
