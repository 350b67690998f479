"""bertforge.ingest.params: every rule of the `ingest:` section is a one-line error."""

from __future__ import annotations

import json

import pytest

from bertforge.errors import BertforgeError
from bertforge.ingest.params import IngestParams
from bertforge.params import load_section
from tests.factories import INGEST_PARAMS
from tests.support import REPO_ROOT


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("holdout_fraction: 0", r"ingest.holdout_fraction must be in \(0, 1\), got 0.0"),
        ("holdout_fraction: 1.5", r"ingest.holdout_fraction must be in \(0, 1\), got 1.5"),
        ("holdout_fraction: half", r"ingest.holdout_fraction must be a number, got 'half'"),
        ("num_proc: 0", r"ingest.num_proc must be >= 1, got 0"),
        ("num_proc: 2.5", r"ingest.num_proc must be an integer, got 2.5"),
        ("rows_per_shard: 0", r"ingest.rows_per_shard must be >= 1, got 0"),
        ("min_sentences: 0", r"ingest.min_sentences must be >= 1, got 0"),
        ("max_document_chars: 10", r"ingest.max_document_chars must be >= 1 and >= min_document"),
        ("sources: []", r"ingest.sources must list at least one source"),
        ("sources: data.txt", r"ingest.sources must be a list"),
        ("sources: [{path: a.txt, hub: wikitext}]", r"sources\[0\].path or hub: exactly one"),
        ("sources: [{config: en}]", r"sources\[0\].path or hub: exactly one"),
        ("sources: [{path: a.txt, split: train}]", r"config and split apply only to hub"),
        ("sources: [{path: a.txt, colum: x}]", r"sources\[0\].colum is not a known parameter"),
        ("shuffle: true", r"ingest.shuffle is not a known parameter"),
    ],
)
def test_params_of_wrong_type_or_out_of_range_are_one_line_errors(tmp_path, yaml_text, expected):
    key = yaml_text.split(":")[0]
    lines = [
        f"  {name}: {json.dumps(value)}" for name, value in INGEST_PARAMS.items() if name != key
    ]
    if key != "sources":
        lines.append("  sources: [{path: data.txt}]")
    path = tmp_path / "params.yaml"
    path.write_text("ingest:\n" + "\n".join(lines) + f"\n  {yaml_text}\n", encoding="utf-8")
    with pytest.raises(BertforgeError, match=expected) as error:
        load_section(IngestParams, "ingest", path)
    assert "\n" not in str(error.value)


def test_repo_params_yaml_ingest_section_is_valid():
    params = load_section(IngestParams, "ingest", REPO_ROOT / "params.yaml")
    assert params.sources[0].path == "data/raw/corpus/*.txt.xz"
