"""bertforge.corpus: reading, cleaning, splitting, dedup, the held-out split and bad input."""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import math
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

import bertforge.corpus as corpus
from bertforge.corpus import (
    IngestParams,
    SeenDigests,
    SourceParams,
    clean_text,
    document_id,
    ingest,
    is_held_out,
    make_sentence_splitter,
    read_documents,
    resolve_sources,
)
from bertforge.errors import BertforgeError
from bertforge.params import load_section
from bertforge.shards import iter_batches, shard_files

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_CORPUS = sorted((REPO_ROOT / "data" / "raw" / "corpus").glob("*.txt.xz"))

PARAMS = {
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


def make_params(*sources: dict, **overrides) -> IngestParams:
    values = {**PARAMS, **overrides}
    return IngestParams(sources=tuple(SourceParams(**source) for source in sources), **values)


def document_text(index: int) -> str:
    return (
        f"Document number {index} begins here. It talks about topic {index * 7 % 13}, "
        f"at length.\nA second line follows with {index} apples."
    )


def write_txt(path: Path, documents: list[str]) -> Path:
    path.write_text("\n\n".join(documents) + "\n", encoding="utf-8")
    return path


def run_ingest(params: IngestParams, output: Path) -> tuple[dict, list[dict], list[dict]]:
    metrics = ingest(params, resolve_sources(params), output, show_progress=False)
    sides = [
        [row for batch in iter_batches(output / side) for row in batch.to_pylist()]
        for side in ("train", "heldout")
    ]
    return metrics, sides[0], sides[1]


def read_texts(path: Path, **source) -> list[str]:
    params = make_params({"path": str(path), **source})
    return [document.text for document in read_documents(resolve_sources(params), 10_000)]


# --- cleaning ----------------------------------------------------------------------------------


def test_clean_text_normalizes_to_nfc():
    decomposed = "Cafe\u0301 nai\u0308ve"
    assert clean_text(decomposed) == "Caf\u00e9 na\u00efve"


def test_clean_text_removes_control_format_and_replacement_characters():
    dirty = "a\x00b\x07c\u200bd\u00ade\ufefff\u200dg\ufffdh\x7fi\x9fj\U000e0001k"
    assert clean_text(dirty) == "abcdefghijk"
    # private use and other printable or unassigned characters are kept
    assert clean_text("x\ue000y\u0378z") == "x\ue000y\u0378z"


def test_clean_text_turns_tabs_newlines_and_runs_of_spaces_into_one_space():
    assert clean_text("  one\ttwo\n\nthree\r\n four\u00a0five\u2028six  ") == (
        "one two three four five six"
    )


def test_clean_text_equals_remove_then_nfc_then_collapse_in_that_order():
    # clean_text reorders the steps for speed; the documented composition must still hold
    alphabet = (
        "ab \t\n\x00\x07\x1f\x85\u00a0\u0301\u0308e\u200b\u200d\u00ad\ufeff\ufffd\u2028\u2000\ue000"
    )
    rng = np.random.default_rng(0)
    for _ in range(3000):
        text = "".join(rng.choice(list(alphabet), size=int(rng.integers(0, 12))))
        expected = corpus.collapse_whitespace(
            corpus.normalize_unicode(corpus.remove_control_characters(text))
        )
        assert clean_text(text) == expected, repr(text)


# --- sentence splitting ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Mr. Smith paid $3.50 to Dr. Jones. He left at 5 p.m. on Monday.",
            ["Mr. Smith paid $3.50 to Dr. Jones.", "He left at 5 p.m. on Monday."],
        ),
        (
            "The U.S. economy grew, e.g. in tech. Did it? Yes!",
            ["The U.S. economy grew, e.g. in tech.", "Did it?", "Yes!"],
        ),
        ("No final punctuation here", ["No final punctuation here"]),
    ],
)
def test_sentencex_keeps_abbreviations_and_decimals_inside_sentences(text, expected):
    assert make_sentence_splitter("sentencex", "en")(text) == expected


def test_ingested_sentences_are_stripped_and_joined_give_the_cleaned_text(tmp_path):
    text = "First sentence is here.   Second one\tfollows!  Third?"
    write_txt(tmp_path / "a.txt", [text])
    _, train, heldout = run_ingest(make_params({"path": str(tmp_path / "a.txt")}), tmp_path / "o")
    (row,) = train + heldout
    assert row["sentences"] == ["First sentence is here.", "Second one follows!", "Third?"]
    assert " ".join(row["sentences"]) == clean_text(text)
    assert row["doc_id"] == document_id(clean_text(text))


# --- filters and dedup -------------------------------------------------------------------------


def test_empty_short_and_one_sentence_documents_are_dropped_with_their_reason(tmp_path):
    documents = [
        "\u200b\x07\ufeff",  # empty once cleaned
        "Too short.",
        "One sentence that is long enough to pass the length filter",
        document_text(1),
    ]
    write_txt(tmp_path / "a.txt", documents)
    params = make_params({"path": str(tmp_path / "a.txt")}, min_sentences=2)
    metrics, train, heldout = run_ingest(params, tmp_path / "o")
    assert metrics["dropped"] == {
        "empty": 1,
        "too_short": 1,
        "too_few_sentences": 1,
        "duplicate": 0,
    }
    assert [row["doc_id"] for row in train + heldout] == [document_id(clean_text(documents[3]))]


def test_exact_duplicates_are_dropped_and_the_first_occurrence_in_source_order_wins(tmp_path):
    repeated = document_text(5)
    write_txt(tmp_path / "a.txt", [document_text(1), repeated])
    # same text after cleaning (other whitespace, decomposed characters absent) counts as equal
    write_txt(tmp_path / "b.txt", [repeated.replace(" ", "  \t"), document_text(2), repeated])
    params = make_params({"path": str(tmp_path / "*.txt")}, holdout_fraction=0.01)
    metrics, train, heldout = run_ingest(params, tmp_path / "o")
    rows = train + heldout
    assert metrics["dropped"]["duplicate"] == 2
    assert len(rows) == 3
    duplicate_id = document_id(clean_text(repeated))
    assert [row["source"] for row in rows if row["doc_id"] == duplicate_id] == [
        (tmp_path / "a.txt").as_posix()
    ]


def test_seen_digests_keeps_exactly_the_first_occurrences_like_a_python_set():
    rng = np.random.default_rng(0)
    seen, reference = SeenDigests(), set()
    for _ in range(60):
        batch = rng.integers(0, 3000, size=int(rng.integers(0, 200)), dtype=np.uint64)
        batch[:3] = np.uint64(2**64 - 1)  # the largest digest
        expected = []
        for digest in batch.tolist():
            expected.append(digest not in reference)
            reference.add(digest)
        assert seen.add_first_occurrences(batch).tolist() == expected
    assert len(seen) == len(reference)


# --- held-out split ----------------------------------------------------------------------------


def test_holdout_follows_the_documented_hash_rule():
    doc_id = "0123456789abcdef"
    value = int.from_bytes(hashlib.sha256(b"7:0123456789abcdef").digest()[:8], "big") / 2**64
    assert is_held_out(doc_id, 7, value + 1e-9)
    assert not is_held_out(doc_id, 7, value - 1e-9)


def test_holdout_fraction_is_within_a_binomial_bound():
    trials, fraction = 20_000, 0.1
    held = sum(is_held_out(f"{index:016x}", 3, fraction) for index in range(trials))
    bound = 5 * math.sqrt(trials * fraction * (1 - fraction))  # 5 standard deviations
    assert abs(held - trials * fraction) < bound


def test_holdout_split_does_not_change_when_documents_are_reordered(tmp_path):
    documents = [document_text(index) for index in range(200)]
    write_txt(tmp_path / "forward.txt", documents)
    write_txt(tmp_path / "backward.txt", documents[::-1])
    held = []
    for name in ("forward", "backward"):
        params = make_params({"path": str(tmp_path / f"{name}.txt")}, holdout_fraction=0.3)
        _, train, heldout = run_ingest(params, tmp_path / name)
        assert len(train) + len(heldout) == 200
        held.append({row["doc_id"] for row in heldout})
    assert held[0] == held[1]
    assert 30 < len(held[0]) < 90


# --- determinism -------------------------------------------------------------------------------


def test_one_and_two_processes_write_byte_identical_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, "BATCH_DOCUMENTS", 16)  # many batches through the pool
    documents = [document_text(index % 250) for index in range(300)]
    write_txt(tmp_path / "a.txt", documents)
    outputs = {}
    for num_proc in (1, 2):
        params = make_params(
            {"path": str(tmp_path / "a.txt")}, num_proc=num_proc, rows_per_shard=37
        )
        output = tmp_path / f"out{num_proc}"
        metrics, _, _ = run_ingest(params, output)
        files = shard_files(output / "train") + shard_files(output / "heldout")
        outputs[num_proc] = (metrics, {f.relative_to(output): f.read_bytes() for f in files})
    assert outputs[1] == outputs[2]
    assert len(outputs[1][1]) > 2


# --- formats -----------------------------------------------------------------------------------


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


def test_compressed_files_read_identically_to_plain(tmp_path):
    plain = write_txt(tmp_path / "a.txt", [document_text(index) for index in range(20)])
    rows = {}
    for jsonl in (False, True):
        if jsonl:
            lines = [json.dumps({"text": document_text(index)}) for index in range(20)]
            plain = tmp_path / "a.jsonl"
            plain.write_text("\n".join(lines) + "\n", encoding="utf-8")
        expected = read_texts(plain)
        assert len(expected) == 20
        for suffix in (".gz", ".xz", ".zst"):
            assert read_texts(compress(plain, suffix)) == expected
        rows[jsonl] = expected
    assert [clean_text(text) for text in rows[False]] == [clean_text(t) for t in rows[True]]


def test_jsonl_and_parquet_sources_read_their_text_column(tmp_path):
    texts = [document_text(index) for index in range(5)]
    (tmp_path / "a.jsonl").write_text(
        "\n".join(json.dumps({"id": i, "body": text}) for i, text in enumerate(texts)) + "\n\n",
        encoding="utf-8",
    )
    pq.write_table(pa.table({"body": texts, "id": list(range(5))}), tmp_path / "b.parquet")
    compress(tmp_path / "b.parquet", ".gz")
    assert read_texts(tmp_path / "a.jsonl", text_column="body") == texts
    assert read_texts(tmp_path / "b.parquet", text_column="body") == texts
    assert read_texts(tmp_path / "b.parquet.gz", text_column="body") == texts
    params = make_params({"path": str(tmp_path / "b.parquet")}, text_column="body")
    assert [doc.text for doc in read_documents(resolve_sources(params), 10_000)] == texts


def test_glob_sources_expand_in_sorted_order(tmp_path):
    for name in ("c", "a", "b"):
        write_txt(tmp_path / f"{name}.txt", [f"Document from {name}. It is long enough."])
    params = make_params({"path": str(tmp_path / "*.txt")})
    assert [source.name for source in resolve_sources(params)] == [
        (tmp_path / f"{name}.txt").as_posix() for name in "abc"
    ]


def test_hub_source_streams_rows_with_datasets_streaming(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name, config, split, streaming):
        calls.append((name, config, split, streaming))
        return iter([{"content": "First row. Yes."}, {"content": None}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    params = make_params({"hub": "org/corpus", "config": "en", "text_column": "content"})
    sources = resolve_sources(params)
    assert sources[0].name == "hub:org/corpus/en:train"
    assert [doc.text for doc in read_documents(sources, 10_000)] == ["First row. Yes.", ""]
    assert calls == [("org/corpus", "en", "train", True)]


HUB_OFFLINE_SCRIPT = """
from bertforge.corpus import read_documents, resolve_sources
from bertforge.stage import run_stage
from tests.test_corpus import make_params

def main():
    params = make_params({"hub": "no-such-org/no-such-dataset", "split": "train"})
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


def test_metrics_count_documents_sentences_characters_and_bytes(tmp_path):
    documents = [document_text(index) for index in range(50)]
    path = write_txt(tmp_path / "a.txt", [*documents, documents[0]])
    metrics, train, heldout = run_ingest(make_params({"path": str(path)}), tmp_path / "o")
    assert metrics["documents"] == {
        "train": len(train),
        "heldout": len(heldout),
        "total": 50,
        "read": 51,
    }
    sentences = [s for row in train + heldout for s in row["sentences"]]
    assert metrics["sentences"] == len(sentences) == 150
    assert metrics["characters"] == sum(len(clean_text(text)) for text in documents)
    assert metrics["input_bytes"] == metrics["uncompressed_bytes"] == path.stat().st_size
    assert metrics["sentence_chars"]["max"] == max(len(s) for s in sentences)
    assert metrics["dropped"]["duplicate"] == 1


@pytest.mark.skipif(not REAL_CORPUS, reason="embedded corpus not built yet")
def test_real_corpus_file_ingests_into_valid_shards(tmp_path):
    smallest = min(REAL_CORPUS, key=lambda path: path.stat().st_size)
    params = make_params({"path": str(smallest)}, min_document_chars=100, max_document_chars=10**6)
    metrics, train, heldout = run_ingest(params, tmp_path / "o")
    assert metrics["documents"]["train"] > 0
    assert metrics["documents"]["total"] > 0.5 * metrics["documents"]["read"]
    assert all(row["source"] == smallest.as_posix() for row in train + heldout)


def test_every_shard_is_checked_against_the_documents_contract(tmp_path, monkeypatch):
    # a splitter that breaks the contract (sentences must be stripped) must stop the stage
    monkeypatch.setattr(
        corpus, "make_sentence_splitter", lambda name, language: lambda text: [f" {text}"]
    )
    path = write_txt(tmp_path / "a.txt", [document_text(1)])
    message = ingest_error(make_params({"path": str(path)}), tmp_path)
    assert "output contract violated" in message


# --- bad input: one line naming the file (and line/row) ----------------------------------------


def ingest_error(params: IngestParams, tmp_path: Path) -> str:
    with pytest.raises(BertforgeError) as error:
        run_ingest(params, tmp_path / "out")
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_corpus_with_no_document_left_is_an_error_naming_the_source(tmp_path):
    path = write_txt(tmp_path / "tiny.txt", ["Short.", "Also short."])
    message = ingest_error(make_params({"path": str(path)}), tmp_path)
    assert str(path) in message
    assert "no documents left after cleaning" in message


def test_non_utf8_file_error_names_the_file_line_and_byte_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(document_text(1).encode() + b"\n\nCaf\xe9 au lait is served here.\n")
    offset = len(document_text(1).encode()) + 2 + 3
    message = ingest_error(make_params({"path": str(path)}), tmp_path)
    assert f"{path}: line 4: not valid UTF-8 at byte offset {offset}" in message


def test_nul_byte_error_names_the_file_and_line(tmp_path):
    path = tmp_path / "nul.txt"
    path.write_bytes(b"A fine first line of text.\nSecond\x00line.\n")
    message = ingest_error(make_params({"path": str(path)}), tmp_path)
    assert f"{path}: line 2: NUL byte at byte offset 33" in message


def test_binary_file_is_rejected_naming_the_file(tmp_path):
    path = tmp_path / "image.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 40)
    message = ingest_error(make_params({"path": str(path)}), tmp_path)
    assert str(path) in message
    assert "NUL byte" in message or "not valid UTF-8" in message


def test_utf16_file_is_rejected_naming_the_file(tmp_path):
    path = tmp_path / "utf16.txt"
    path.write_text(document_text(1), encoding="utf-16")
    message = ingest_error(make_params({"path": str(path)}), tmp_path)
    assert message.startswith(f"{path}: line 1:")


def test_50_mb_single_line_is_rejected_with_bounded_memory(tmp_path):
    path = tmp_path / "one-line.txt"
    with open(path, "wb") as handle:
        for _ in range(50):
            handle.write(b"word " * 200_000)  # 1 MB, no newline
    params = make_params({"path": str(path)}, max_document_chars=1_000_000)
    tracemalloc.start()
    try:
        message = ingest_error(params, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert f"{path}: line 1: document longer than max_document_chars (1000000)" in message
    assert peak < 40 * 2**20  # the line is 50 MB; at most one 12 MB read is held


def test_document_of_many_lines_over_max_document_chars_names_its_first_line(tmp_path):
    path = write_txt(tmp_path / "long.txt", [document_text(1), "A line of text.\n" * 100])
    message = ingest_error(make_params({"path": str(path)}, max_document_chars=1000), tmp_path)
    assert f"{path}: line 4: document longer than max_document_chars (1000" in message


def test_missing_path_is_an_error_naming_it(tmp_path):
    with pytest.raises(BertforgeError, match=r"nowhere\.txt: file not found"):
        resolve_sources(make_params({"path": str(tmp_path / "nowhere.txt")}))


def test_glob_matching_nothing_is_an_error_naming_the_pattern(tmp_path):
    with pytest.raises(
        BertforgeError, match=r"ingest.sources\[0\].path: no file matches .*\*\.txt"
    ):
        resolve_sources(make_params({"path": str(tmp_path / "*.txt")}))


def test_unsupported_file_type_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "notes.docx"
    path.write_bytes(b"PK")
    with pytest.raises(BertforgeError, match=r"notes\.docx: unsupported file type"):
        resolve_sources(make_params({"path": str(path)}))


def test_jsonl_missing_text_column_names_file_line_and_column(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "Fine."}\n{"body": "No text here."}\n', encoding="utf-8")
    message = ingest_error(make_params({"path": str(path)}), tmp_path)
    assert f"{path}: line 2: no column 'text' (has: body)" in message


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": "Fine."}\n\n{"text": "unterminated}\n', encoding="utf-8")
    message = ingest_error(make_params({"path": str(path)}), tmp_path)
    assert f"{path}: line 3: malformed JSON" in message


def test_jsonl_text_that_is_not_a_string_names_file_line_and_column(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_text('{"text": 12}\n', encoding="utf-8")
    message = ingest_error(make_params({"path": str(path)}), tmp_path)
    assert f"{path}: line 1: column 'text' must be text, got int" in message


def test_parquet_missing_text_column_names_file_and_column(tmp_path):
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"body": ["Some text."]}), path)
    message = ingest_error(make_params({"path": str(path)}), tmp_path)
    assert f"{path}: no column 'text' (has: body)" in message


def test_corrupt_compressed_file_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "a.txt.xz"
    path.write_bytes(b"this is not xz data at all")
    message = ingest_error(make_params({"path": str(path)}), tmp_path)
    assert message.startswith(f"{path}: cannot read:")


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
    lines = [f"  {name}: {json.dumps(value)}" for name, value in PARAMS.items() if name != key]
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
