"""The tokenizer's files: the checked load, the digest later stages record, the transformers
configs, and the vocabulary in id order."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models

from bertforge.errors import BertforgeError
from bertforge.tokenizer.files import load_tokenizer, vocab_digest, vocab_tokens
from tests.factories import copy_tokenizer


def test_vocab_digest_is_the_sha256_of_vocab_txt(uncased_dir: Path, tmp_path: Path) -> None:
    expected = hashlib.sha256((uncased_dir / "vocab.txt").read_bytes()).hexdigest()
    assert vocab_digest(uncased_dir) == expected
    (tmp_path / "vocab.txt").write_text("[PAD]\n", encoding="utf-8")
    assert vocab_digest(tmp_path) != expected
    with pytest.raises(BertforgeError, match=r"vocab\.txt"):
        vocab_digest(tmp_path / "missing")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda d: [p.unlink() for p in d.iterdir()] and d.rmdir(),
            "tokenizer directory not found",
        ),
        (lambda d: (d / "tokenizer.json").unlink(), "tokenizer.json: not found"),
        (lambda d: (d / "vocab.txt").unlink(), "vocab.txt: not found"),
        (lambda d: (d / "tokenizer.json").write_text("{not json"), "not a valid tokenizer"),
        (lambda d: (d / "vocab.txt").write_bytes(b"\xff\xfe[PAD]\n"), "unreadable"),
        (
            lambda d: (d / "vocab.txt").write_text(
                "".join(f"{t}\n" for t in reversed((d / "vocab.txt").read_text().split()))
            ),
            "disagrees with tokenizer.json",
        ),
    ],
    ids=["no directory", "no tokenizer.json", "no vocab.txt", "bad json", "bad utf-8", "mismatch"],
)
def test_load_tokenizer_rejects_missing_or_inconsistent_files_in_one_line(
    uncased_dir: Path, tmp_path: Path, damage, message: str
) -> None:
    directory = copy_tokenizer(uncased_dir, tmp_path / "tokenizer")
    damage(directory)
    with pytest.raises(BertforgeError, match=message) as raised:
        load_tokenizer(directory)
    assert "\n" not in str(raised.value)


def test_transformers_config_names_the_special_tokens_and_bert_flags(uncased_dir: Path) -> None:
    config = json.loads((uncased_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["do_lower_case"] is True and config["strip_accents"] is None
    assert config["tokenize_chinese_chars"] is True and config["model_max_length"] == 512
    assert (config["cls_token"], config["mask_token"]) == ("[CLS]", "[MASK]")
    special_map = json.loads((uncased_dir / "special_tokens_map.json").read_text(encoding="utf-8"))
    assert special_map["pad_token"] == "[PAD]"


@pytest.mark.parametrize(
    ("vocab", "expected"),
    [
        ({"[UNK]": 0, "b": 2, "a": 1}, ["[UNK]", "a", "b"]),
        ({"[UNK]": 0, "a": 2}, None),  # a gap at id 1
        ({"[UNK]": 1, "a": 2}, None),  # not from 0
    ],
)
def test_vocab_tokens_lists_the_vocabulary_in_id_order_and_refuses_gaps(vocab, expected):
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    if expected is None:
        with pytest.raises(BertforgeError, match="not contiguous from 0"):
            vocab_tokens(tokenizer)
    else:
        assert vocab_tokens(tokenizer) == expected
