"""A truncated .gz or .xz corpus (the .zst case is in test_ingest_hostile.py): ingest stops in
one line naming the file, exit 2, and the previous data/ingested and metrics/ingest.json stay."""

from __future__ import annotations

import gzip
import lzma
from pathlib import Path

import pytest

from tests.factories import make_ingest_project, run_ingest_stage, stage_error_lines
from tests.robustness.support import previous_ingest_outputs, snapshot

DOCUMENTS = "\n\n".join(
    f"Document {n} has a first sentence. It has a second one." for n in range(300)
)
COMPRESSORS = {".gz": gzip.compress, ".xz": lzma.compress}


@pytest.mark.parametrize("suffix", list(COMPRESSORS))
def test_a_truncated_compressed_corpus_is_one_line_naming_the_file(tmp_path: Path, suffix: str):
    root = make_ingest_project(tmp_path / "project")
    previous_ingest_outputs(root)
    compressed = COMPRESSORS[suffix](DOCUMENTS.encode())
    (root / "corpus" / f"b.txt{suffix}").write_bytes(compressed[: len(compressed) // 2])
    params = root / "params.yaml"
    params.write_text(params.read_text().replace("corpus/*.txt", "corpus/*.txt*"))
    before = snapshot(root)
    result = run_ingest_stage(root)
    assert result.returncode == 2, result.stderr
    (line,) = stage_error_lines(result)
    assert line.startswith(f"error: corpus/b.txt{suffix}: cannot read: "), line
    assert snapshot(root) == before
