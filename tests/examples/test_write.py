"""The examples stage in process: shards that follow the contract, meta.json that describes
them, the same bytes whatever num_proc, whole words kept whole with a real tokenizer, and
one-line errors on bad inputs."""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tokenizers import BertWordPieceTokenizer

from bertforge.errors import BertforgeError
from bertforge.examples.meta import read_meta
from bertforge.examples.params import ExamplesParams
from bertforge.examples.write import check_inputs
from bertforge.io import hash_path
from bertforge.schemas import DOCUMENT_ARROW_SCHEMA
from bertforge.shards import iter_batches, shard_files
from tests.factories import (
    EXAMPLES_SPECIAL_TOKENS,
    copy_examples_project,
    fixture_documents,
    make_examples,
    make_examples_project,
    small_examples_params,
    write_split,
)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/ingested (train 400 documents in 4 shards, heldout 30) and data/tokenizer."""
    return make_examples_project(tmp_path_factory.mktemp("examples-project"))


def train_plain_tokenizer(directory: Path, documents, special_tokens) -> Path:
    """A tokenizer made with `tokenizers` alone, to get one the vocab stage would refuse."""
    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(
        (" ".join(document) for document in documents),
        vocab_size=300,
        special_tokens=special_tokens,
        show_progress=False,
    )
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    tokenizer.save_model(str(directory))
    return directory


def read_split(directory: Path) -> pa.Table:
    return pa.Table.from_batches(list(iter_batches(directory)))


def test_examples_follow_the_contract_and_meta_describes_them(project, tmp_path):
    params = small_examples_params()
    metrics = make_examples(project, tmp_path, params)
    meta = read_meta(tmp_path)
    vocab = (project / "data/tokenizer/vocab.txt").read_text().splitlines()
    assert meta["vocab_size"] == len(vocab) and meta["id_dtype"] == "uint16"
    assert (
        meta["vocab_digest"]
        == hashlib.sha256((project / "data/tokenizer/vocab.txt").read_bytes()).hexdigest()
    )
    assert meta["special_token_ids"] == {
        token: vocab.index(token) for token in EXAMPLES_SPECIAL_TOKENS
    }
    for split in ("train", "heldout"):
        table = read_split(tmp_path / split)
        assert table.schema.field("input_ids").type == pa.list_(pa.uint16())
        assert meta["instances"][split] == len(table) == metrics[split]["instances"]
        documents = len(read_split(project / "data/ingested" / split))  # 400 and 30
        units = -(-documents // params.negative_pool_size)  # the last one shorter, not single
        assert len(shard_files(tmp_path / split)) == units, "one shard per work unit"
    train = metrics["train"]
    assert 0.12 < train["masked_fraction"] < 0.16
    assert abs(train["masked_as_mask_ratio"] - 0.8) < 0.03
    assert 0.5 <= train["nsp_random_next_ratio"] < 0.9, "0.5 plus the one-sentence chunks"
    assert 0.3 < train["mean_fill_ratio"] <= 1.0


def test_shards_are_byte_identical_whatever_num_proc(project, tmp_path):
    make_examples(project, tmp_path / "one", small_examples_params(num_proc=1))
    make_examples(project, tmp_path / "two", small_examples_params(num_proc=2))
    assert len(shard_files(tmp_path / "one/train")) > 1
    assert hash_path(tmp_path / "one") == hash_path(tmp_path / "two")
    make_examples(project, tmp_path / "other-seed", small_examples_params(random_seed=7))
    assert hash_path(tmp_path / "one") != hash_path(tmp_path / "other-seed")


def test_whole_word_mask_never_splits_a_word_of_the_real_tokenizer(project, tmp_path):
    make_examples(project, tmp_path, small_examples_params(whole_word_mask=True))
    vocab = (project / "data/tokenizer/vocab.txt").read_text().splitlines()
    continuation = np.array([token.startswith("##") for token in vocab])
    table = read_split(tmp_path / "train").to_pylist()
    split_words = masked_pieces = 0
    for row in table:
        original = np.array(row["input_ids"])
        original[row["masked_lm_positions"]] = row["masked_lm_ids"]
        chosen = set(row["masked_lm_positions"])
        for word in words_of(original, continuation):
            split_words += bool(chosen & set(word)) and not set(word) <= chosen
            masked_pieces += len(word) > 1 and set(word) <= chosen
    assert split_words == 0
    assert masked_pieces > 100, "the fixture does mask multi-piece words"


def words_of(token_ids: np.ndarray, continuation: np.ndarray) -> list[list[int]]:
    """Positions grouped into words: a "##" piece joins the word before; [CLS]/[SEP] end words."""
    words: list[list[int]] = []
    previous_special = True
    for position, token in enumerate(token_ids.tolist()):
        special = token in (2, 3)
        if not special:
            if continuation[token] and not previous_special:
                words[-1].append(position)
            else:
                words.append([position])
        previous_special = special
    return words


def expect_input_error(copy: Path, message: str, params: ExamplesParams | None = None) -> None:
    with pytest.raises(BertforgeError, match=message):
        check_inputs(
            copy / "data/ingested", copy / "data/tokenizer", params or small_examples_params()
        )


def test_missing_ingested_split_is_an_error(project, tmp_path):
    copy = copy_examples_project(project, tmp_path)
    shutil.rmtree(copy / "data/ingested/heldout")
    expect_input_error(copy, r"data/ingested/heldout: not found \(run the ingest stage first\)")


def test_ingested_split_without_documents_is_an_error(project, tmp_path):
    copy = copy_examples_project(project, tmp_path)
    shutil.rmtree(copy / "data/ingested/train")
    (copy / "data/ingested/train").mkdir()
    pq.write_table(
        DOCUMENT_ARROW_SCHEMA.empty_table(), copy / "data/ingested/train/part-00000.parquet"
    )
    expect_input_error(copy, "data/ingested/train: no documents")


def test_missing_tokenizer_is_an_error(project, tmp_path):
    copy = copy_examples_project(project, tmp_path)
    (copy / "data/tokenizer/tokenizer.json").unlink()
    expect_input_error(copy, "data/tokenizer/tokenizer.json: not found")


def test_tokenizer_json_and_vocab_txt_that_disagree_are_an_error(project, tmp_path):
    copy = copy_examples_project(project, tmp_path)
    vocab = (copy / "data/tokenizer/vocab.txt").read_text().splitlines()
    vocab[10], vocab[11] = vocab[11], vocab[10]
    (copy / "data/tokenizer/vocab.txt").write_text("\n".join(vocab) + "\n")
    expect_input_error(copy, "data/tokenizer/vocab.txt: disagrees with tokenizer.json")


def test_tokenizer_without_a_special_token_is_an_error(project, tmp_path):
    copy = copy_examples_project(project, tmp_path)
    shutil.rmtree(copy / "data/tokenizer")
    train_plain_tokenizer(
        copy / "data/tokenizer", fixture_documents(50, 3), EXAMPLES_SPECIAL_TOKENS[:4]
    )
    expect_input_error(copy, r"special token \[MASK\] is missing")


def test_nsp_on_a_split_with_a_single_document_is_an_error(project, tmp_path):
    copy = copy_examples_project(project, tmp_path)
    shutil.rmtree(copy / "data/ingested/heldout")
    write_split(copy / "data/ingested/heldout", fixture_documents(1, seed=4))
    expect_input_error(copy, "data/ingested/heldout: nsp needs at least two documents")
    check_inputs(
        copy / "data/ingested", copy / "data/tokenizer", replace(small_examples_params(), nsp=False)
    )
