"""bertforge.ingest.pipeline: the whole stage in-process, its determinism, metrics and contract."""

from __future__ import annotations

import pytest

import bertforge.ingest.documents as documents_module
from bertforge.ingest.cleaning import clean_text
from bertforge.shards import shard_files
from tests.factories import ingest_error, ingest_params, numbered_document, run_ingest, write_txt
from tests.support import REPO_ROOT

REAL_CORPUS = sorted((REPO_ROOT / "data" / "raw" / "corpus").glob("*.txt.xz"))


def test_one_and_two_processes_write_byte_identical_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(documents_module, "BATCH_DOCUMENTS", 16)  # many batches through the pool
    documents = [numbered_document(index % 250) for index in range(300)]
    write_txt(tmp_path / "a.txt", documents)
    outputs = {}
    for num_proc in (1, 2):
        params = ingest_params(
            {"path": str(tmp_path / "a.txt")}, num_proc=num_proc, rows_per_shard=37
        )
        output = tmp_path / f"out{num_proc}"
        metrics, _, _ = run_ingest(params, output)
        files = shard_files(output / "train") + shard_files(output / "heldout")
        outputs[num_proc] = (metrics, {f.relative_to(output): f.read_bytes() for f in files})
    assert outputs[1] == outputs[2]
    assert len(outputs[1][1]) > 2


def test_metrics_count_documents_sentences_characters_and_bytes(tmp_path):
    documents = [numbered_document(index) for index in range(50)]
    path = write_txt(tmp_path / "a.txt", [*documents, documents[0]])
    metrics, train, heldout = run_ingest(ingest_params({"path": str(path)}), tmp_path / "o")
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
    params = ingest_params(
        {"path": str(smallest)}, min_document_chars=100, max_document_chars=10**6
    )
    metrics, train, heldout = run_ingest(params, tmp_path / "o")
    assert metrics["documents"]["train"] > 0
    assert metrics["documents"]["total"] > 0.5 * metrics["documents"]["read"]
    assert all(row["source"] == smallest.as_posix() for row in train + heldout)


def test_every_shard_is_checked_against_the_documents_contract(tmp_path, monkeypatch):
    # a splitter that breaks the contract (sentences must be stripped) must stop the stage
    monkeypatch.setattr(
        documents_module,
        "make_sentence_splitter",
        lambda name, language: lambda text: [f" {text}"],
    )
    path = write_txt(tmp_path / "a.txt", [numbered_document(1)])
    message = ingest_error(ingest_params({"path": str(path)}), tmp_path)
    assert "output contract violated" in message


def test_a_corpus_with_no_document_left_is_an_error_naming_the_source(tmp_path):
    path = write_txt(tmp_path / "tiny.txt", ["Short.", "Also short."])
    message = ingest_error(ingest_params({"path": str(path)}), tmp_path)
    assert str(path) in message
    assert "no documents left after cleaning" in message
