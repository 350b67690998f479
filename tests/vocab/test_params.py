"""params.yaml `vocab`: the repo's values are valid, anything else is a one-line error."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from bertforge.errors import BertforgeError
from bertforge.params import load_section
from bertforge.tokenizer.pipeline import BERT_SPECIAL_TOKENS
from bertforge.vocab.params import VocabParams
from tests.support import REPO_ROOT


def load_vocab_params(tmp_path: Path, **overrides: object) -> VocabParams:
    section = {
        "vocab_size": 16000,
        "lowercase": True,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "min_frequency": 2,
        "limit_alphabet": 1000,
        "special_tokens": list(BERT_SPECIAL_TOKENS),
    }
    section.update(overrides)
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps({"vocab": section}), encoding="utf-8")
    return load_section(VocabParams, "vocab", path)


def test_the_repo_params_are_valid() -> None:
    params = load_section(VocabParams, "vocab", REPO_ROOT / "params.yaml")
    assert params.special_tokens[:5] == BERT_SPECIAL_TOKENS


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"vocab_size": 1005}, "vocab.vocab_size must exceed the special tokens plus the alphabet"),
        ({"vocab_size": 2_000_000}, "vocab.vocab_size must be at most 1,000,000"),
        ({"min_frequency": 0}, "vocab.min_frequency must be at least 1"),
        ({"limit_alphabet": 0}, "vocab.limit_alphabet must be at least 1"),
        (
            {"special_tokens": ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]},
            "must contain [PAD], [UNK], [CLS], [SEP], [MASK] (missing [MASK])",
        ),
        (
            {"special_tokens": [*BERT_SPECIAL_TOKENS, "[PAD]"]},
            "vocab.special_tokens must be unique",
        ),
        ({"special_tokens": [*BERT_SPECIAL_TOKENS, "[a b]"]}, "without whitespace"),
        ({"lowercase": "yes"}, "vocab.lowercase must be true or false"),
        ({"strip_accents": "maybe"}, "vocab.strip_accents must be true or false"),
        ({"vocab_size": 3.5}, "vocab.vocab_size must be an integer"),
        ({"unknown_knob": 1}, "vocab.unknown_knob is not a known parameter"),
    ],
)
def test_params_out_of_range_or_of_wrong_type_are_one_line_errors(
    tmp_path: Path, overrides: dict, message: str
) -> None:
    with pytest.raises(BertforgeError, match=re.escape(message)) as raised:
        load_vocab_params(tmp_path, **overrides)
    assert "\n" not in str(raised.value)
