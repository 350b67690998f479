"""bertforge.ingest.readers: every format and compression, hub streaming, and bad input as one
line naming the file and line or row."""

from __future__ import annotations

import gzip
import json
import lzma
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from bertforge.ingest.cleaning import clean_text
from bertforge.ingest.readers import read_documents
from bertforge.ingest.sources import resolve_sources
from tests.factories import ingest_error, ingest_params, numbered_document, write_txt
from tests.support import REPO_ROOT


def read_texts(path: Path, **source) -> list[str]:
    params = ingest_params({"path": str(path), **source})
    return [document.text for document in read_documents(resolve_sources(params), 10_000)]


def compress(path: Path, suffix: str) -> Path:
    data = path.read_bytes()
    target = path.with_name(path.name + suffix)
    if suffix == ".gz":
        target.write_bytes(gzip.compress(data, mtime=0))
    elif suffix == ".xz":
        target.write_bytes(lzma.compress(data))
    else:
        target.write_bytes(zstandard.ZstdCompressor().compress(data))
    return target


# --- formats -----------------------------------------------------------------------------------


def test_compressed_files_read_identically_to_plain(tmp_path):
    plain = write_txt(tmp_path / "a.txt", [numbered_document(index) for index in range(20)])
    rows = {}
    for jsonl in (False, True):
        if jsonl:
            lines = [json.dumps({"text": numbered_document(index)}) for index in range(20)]
            plain = tmp_path / "a.jsonl"
            plain.write_text("\n".join(lines) + "\n", encoding="utf-8")
        expected = read_texts(plain)
        assert len(expected) == 20
        for suffix in (".gz", ".xz", ".zst"):
            assert read_texts(compress(plain, suffix)) == expected
        rows[jsonl] = expected
    assert [clean_text(text) for text in rows[False]] == [clean_text(t) for t in rows[True]]


def test_jsonl_and_parquet_sources_read_their_text_column(tmp_path):
    texts = [numbered_document(index) for index in range(5)]
    (tmp_path / "a.jsonl").write_text(
        "\n".join(json.dumps({"id": i, "body": text}) for i, text in enumerate(texts)) + "\n\n",
        encoding="utf-8",
    )
    pq.write_table(pa.table({"body": texts, "id": list(range(5))}), tmp_path / "b.parquet")
    compress(tmp_path / "b.parquet", ".gz")
    assert read_texts(tmp_path / "a.jsonl", text_column="body") == texts
    assert read_texts(tmp_path / "b.parquet", text_column="body") == texts
    assert read_texts(tmp_path / "b.parquet.gz", text_column="body") == texts
    params = ingest_params({"path": str(tmp_path / "b.parquet")}, text_column="body")
    assert [doc.text for doc in read_documents(resolve_sources(params), 10_000)] == texts


def test_hub_source_streams_rows_with_datasets_streaming(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name, config, split, streaming):
        calls.append((name, config, split, streaming))
        return iter([{"content": "First row. Yes."}, {"content": None}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    params = ingest_params({"hub": "org/corpus", "config": "en", "text_column": "content"})
    sources = resolve_sources(params)
    assert sources[0].name == "hub:org/corpus/en:train"
    assert [doc.text for doc in read_documents(sources, 10_000)] == ["First row. Yes.", ""]
    assert calls == [("org/corpus", "en", "train", True)]


HUB_OFFLINE_SCRIPT = """
from bertforge.ingest.readers import read_documents
from bertforge.ingest.sources import resolve_sources
from bertforge.stage import run_stage
from tests.factories import ingest_params

def main():
    params = ingest_params({"hub": "no-such-org/no-such-dataset", "split": "train"})
    list(read_documents(resolve_sources(params), 10_000))

run_stage(main)
"""


def test_hub_source_offline_is_a_one_line_error_naming_the_dataset():
    # a fresh interpreter: huggingface_hub reads HF_HUB_OFFLINE when it is first imported
    result = subprocess.run(
        [sys.executable, "-c", HUB_OFFLINE_SCRIPT],
        cwd=REPO_ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: hub dataset 'no-such-org/no-such-dataset'")
    assert "network" in line


# --- bad input: one line naming the file (and line/row) ----------------------------------------


def test_non_utf8_file_error_names_the_file_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(numbered_document(1).encode() + b"\n\nCaf\xe9 au lait is served here.\n")
    offset = len(numbered_document(1).encode()) + 2 + 3
    message = ingest_error(ingest_params({"path": str(path)}), tmp_path)
    assert f"{path}: line 4: not valid UTF-8 at byte offset {offset}" in message


def test_nul_byte_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "nul.txt"
    path.write_bytes(b"A fine first line of text.\nSecond\x00line.\n")
    message = ingest_error(ingest_params({"path": str(path)}), tmp_path)
    assert f"{path}: line 2: NUL byte at byte offset 33" in message


def test_binary_file_is_rejected_naming_the_file(tmp_path):
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    message = ingest_error(ingest_params({"path": str(path)}), tmp_path)
    assert str(path) in message
    assert "NUL byte" in message or "not valid UTF-8" in message


def test_utf16_file_is_rejected_naming_the_file(tmp_path):
    path = tmp_path / "utf16.txt"
    path.write_text(numbered_document(1), encoding="utf-16")
    message = ingest_error(ingest_params({"path": str(path)}), tmp_path)
    assert message.startswith(f"{path}: line 1:")


def test_50_mb_single_line_is_rejected_with_bounded_memory(tmp_path):
    path = tmp_path / "one-line.txt"
    with open(path, "wb") as handle:
        for _ in range(50):
            handle.write(b"word " * 200_000)  # 1 MB, no newline
    params = ingest_params({"path": str(path)}, max_document_chars=1_000_000)
    tracemalloc.start()
    try:
        message = ingest_error(params, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"{path}: line 1: document longer than max_document_chars (1000000)" in message
    assert peak < 40 * 2**20  # the line is 50 MB; at most one 12 MB read is held


def test_document_of_many_lines_over_max_document_chars_names_its_first_line(tmp_path):
    path = write_txt(tmp_path / "long.txt", [numbered_document(1), "A line of text.\n" * 100])
    message = ingest_error(ingest_params({"path": str(path)}, max_document_chars=1000), tmp_path)
    assert f"{path}: line 4: document longer than max_document_chars (1000" in message


def test_jsonl_missing_text_column_names_file_line_and_column(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "Fine."}\n{"body": "No text here."}\n', encoding="utf-8")
    message = ingest_error(ingest_params({"path": str(path)}), tmp_path)
    assert f"{path}: line 2: no column 'text' (has: body)" in message


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "Fine."}\n\n{"text": "unterminated}\n', encoding="utf-8")
    message = ingest_error(ingest_params({"path": str(path)}), tmp_path)
    assert f"{path}: line 3: malformed JSON" in message


def test_jsonl_text_that_is_not_a_string_names_file_line_and_column(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": 12}\n', encoding="utf-8")
    message = ingest_error(ingest_params({"path": str(path)}), tmp_path)
    assert f"{path}: line 1: column 'text' must be text, got int" in message


def test_parquet_missing_text_column_names_file_and_column(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"body": ["Some text."]}), path)
    message = ingest_error(ingest_params({"path": str(path)}), tmp_path)
    assert f"{path}: no column 'text' (has: body)" in message


def test_corrupt_compressed_file_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "a.txt.xz"
    path.write_bytes(b"this is not xz data at all")
    message = ingest_error(ingest_params({"path": str(path)}), tmp_path)
    assert message.startswith(f"{path}: cannot read:")
