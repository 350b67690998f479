"""The alphabet covers the corpus: `alphabet_coverage` grows it past `limit_alphabet` for a
script of thousands of characters, and a held-out [UNK] rate over `max_unk_rate` is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertforge.errors import BertforgeError
from bertforge.vocab.metrics import check_unk_rate, heldout_metrics
from bertforge.vocab.train import count_alphabet, train_tokenizer
from tests.factories import vocab_params, write_documents

# 30 distinct ideographs, the first ten ten times as frequent as the rest
CHINESE_TRAIN = [
    ["".join(chr(0x4E00 + i) for i in range(10)) * 10 + "。", "".join(
        chr(0x4E00 + i) for i in range(10, 30)) + "。"],
    ["天地玄黄，宇宙洪荒。", "日月盈昃，辰宿列张。"],
]  # fmt: skip


def test_limit_alphabet_alone_keeps_only_the_most_frequent_characters() -> None:
    alphabet = count_alphabet(["aaab", "aaac"], limit=1, tokenize_chinese_chars=True, coverage=0.5)
    assert alphabet.characters == ("a",)


def test_coverage_extends_the_alphabet_until_it_covers_that_fraction() -> None:
    # a: 6 of 8 occurrences, b and c one each: 0.75 needs a alone, 0.8 needs a and b (tie: b < c)
    texts = ["aaab", "aaac"]
    assert count_alphabet(texts, 1, True, coverage=0.75).characters == ("a",)
    assert count_alphabet(texts, 1, True, coverage=0.8).characters == ("a", "b")
    assert count_alphabet(texts, 1, True, coverage=1.0).characters == ("a", "b", "c")


def test_coverage_changes_nothing_when_limit_alphabet_already_covers_the_text() -> None:
    texts = ["the quick brown fox", "jumps over the lazy dog"]
    assert count_alphabet(texts, 1000, True, coverage=0.9999) == count_alphabet(
        texts, 1000, True, coverage=0.5
    )


def test_a_chinese_corpus_gets_every_character_it_needs(tmp_path: Path) -> None:
    write_documents(tmp_path / "train", CHINESE_TRAIN)
    params = {"limit_alphabet": 5, "vocab_size": 100}
    small = train_tokenizer(tmp_path / "train", vocab_params(**params, alphabet_coverage=0.5))
    covering = train_tokenizer(tmp_path / "train", vocab_params(**params, alphabet_coverage=1.0))
    every_character = {char for document in CHINESE_TRAIN for s in document for char in s}
    assert not every_character <= set(small.get_vocab())
    assert every_character <= set(covering.get_vocab())
    write_documents(tmp_path / "heldout", CHINESE_TRAIN[1:])
    assert heldout_metrics(covering, tmp_path / "heldout")["unk_rate"] == 0.0
    assert heldout_metrics(small, tmp_path / "heldout")["unk_rate"] > 0.5


def test_an_alphabet_larger_than_the_vocabulary_names_both_params(tmp_path: Path) -> None:
    write_documents(tmp_path / "train", CHINESE_TRAIN)
    params = vocab_params(limit_alphabet=5, vocab_size=20, alphabet_coverage=1.0)
    with pytest.raises(
        BertforgeError,
        match=r"vocab\.vocab_size 20 .* 48 characters .*"
        r"raise vocab\.vocab_size above 53 or lower vocab\.alphabet_coverage",
    ):
        train_tokenizer(tmp_path / "train", params)


def test_an_unk_rate_over_the_limit_names_the_param_to_raise() -> None:
    check_unk_rate({"unk_rate": 0.005}, 0.005, Path("data/ingested/heldout"))
    check_unk_rate({"unk_rate": None}, 0.0, Path("data/ingested/heldout"))
    with pytest.raises(BertforgeError) as error:
        check_unk_rate({"unk_rate": 0.099}, 0.005, Path("data/ingested/heldout"))
    assert str(error.value) == (
        "data/ingested/heldout: 9.90% of the held-out tokens are [UNK], over vocab.max_unk_rate "
        "0.005 (raise vocab.alphabet_coverage, e.g. to 1.0, or vocab.max_unk_rate)"
    )
