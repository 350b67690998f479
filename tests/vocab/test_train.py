"""WordPiece training: deterministic, special tokens first, learned from the training split
only, and one-line errors when the ingested splits are missing or empty."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertforge.errors import BertforgeError
from bertforge.tokenizer.files import load_tokenizer, special_token_ids, write_tokenizer
from bertforge.vocab.ingested import check_ingested
from bertforge.vocab.train import train_tokenizer
from tests.factories import VOCAB_TRAIN_DOCUMENTS, vocab_params, write_documents


def test_training_twice_gives_byte_identical_files(ingested: Path, tmp_path: Path) -> None:
    params = vocab_params(vocab_size=500)
    for name in ("first", "second"):
        (tmp_path / name).mkdir()
        tokenizer = train_tokenizer(ingested / "data/ingested/train", params)
        write_tokenizer(tokenizer, tmp_path / name, params)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()


def test_vocab_txt_lists_special_tokens_first_in_params_order(
    ingested: Path, tmp_path: Path
) -> None:
    specials = ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "[unused0]")
    params = vocab_params(special_tokens=specials)
    tokenizer = train_tokenizer(ingested / "data/ingested/train", params)
    write_tokenizer(tokenizer, tmp_path, params)
    lines = (tmp_path / "vocab.txt").read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""
    assert tuple(lines[: len(specials)]) == specials
    assert special_token_ids(load_tokenizer(tmp_path)) == {t: i for i, t in enumerate(specials)}
    assert len(lines) - 1 == tokenizer.get_vocab_size() <= params.vocab_size
    assert len(set(lines[:-1])) == len(lines) - 1


def test_default_layout_puts_pad_at_zero_and_learns_whole_frequent_words(uncased_dir: Path) -> None:
    tokenizer = load_tokenizer(uncased_dir)
    assert special_token_ids(tokenizer) == {
        "[PAD]": 0,
        "[UNK]": 1,
        "[CLS]": 2,
        "[SEP]": 3,
        "[MASK]": 4,
    }
    assert tokenizer.encode("the runner", add_special_tokens=False).tokens[0] == "the"
    vocab = tokenizer.get_vocab()
    assert any(token.startswith("##") and len(token) > 3 for token in vocab)


def test_vocabulary_is_learned_from_training_documents_only(uncased_dir: Path) -> None:
    vocab = load_tokenizer(uncased_dir).get_vocab()
    assert "⅋" not in vocab
    assert "zebra" not in vocab
    assert "z" in vocab


def test_limit_alphabet_keeps_the_most_frequent_characters(tmp_path: Path) -> None:
    write_documents(tmp_path / "train", [["aaaa bbb cc d"], ["aaaa bbb cc e"], ["ab ab ba"]])
    params = vocab_params(limit_alphabet=2, vocab_size=40, alphabet_coverage=0.5)
    vocab = train_tokenizer(tmp_path / "train", params).get_vocab()
    single_characters = {token for token in vocab if len(token) == 1}
    assert single_characters == {"a", "b"}


def test_missing_training_split_names_it_and_suggests_ingest(tmp_path: Path) -> None:
    with pytest.raises(BertforgeError, match=r"data/ingested/train.*dvc repro ingest"):
        train_tokenizer(tmp_path / "data/ingested/train", vocab_params())


def test_a_training_split_without_documents_is_an_error(tmp_path: Path) -> None:
    write_documents(tmp_path / "train", [])
    with pytest.raises(BertforgeError, match="no training documents"):
        train_tokenizer(tmp_path / "train", vocab_params())


def test_training_documents_without_any_word_are_an_error(tmp_path: Path) -> None:
    write_documents(tmp_path / "train", [["\u200b\u200d"], ["\ufeff"]])
    with pytest.raises(BertforgeError, match="contain no words"):
        train_tokenizer(tmp_path / "train", vocab_params())


def test_missing_heldout_split_is_an_error_before_training(tmp_path: Path) -> None:
    write_documents(tmp_path / "train", VOCAB_TRAIN_DOCUMENTS)
    with pytest.raises(BertforgeError, match=r"heldout: held-out documents not found.*ingest"):
        check_ingested(tmp_path / "train", tmp_path / "heldout")
