"""The tokenizer's files: what the vocab stage writes into data/tokenizer, and the checked load.

vocab.txt lists the vocabulary one token a line in id order (the original BERT's format),
tokenizer.json holds the whole pipeline (HF `tokenizers`), and tokenizer_config.json with
special_tokens_map.json let `transformers.AutoTokenizer.from_pretrained` load the directory.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import Tokenizer

from bertforge.errors import BertforgeError
from bertforge.io import sha256_file
from bertforge.schemas import id_dtype_name
from bertforge.tokenizer.pipeline import BERT_SPECIAL_TOKENS

if TYPE_CHECKING:
    from bertforge.vocab.params import VocabParams

VOCAB_FILE = "vocab.txt"
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
MODEL_MAX_LENGTH = 512

# The roles transformers gives the special tokens (special_tokens_map.json).
SPECIAL_TOKEN_ROLES = {
    "[PAD]": "pad_token",
    "[UNK]": "unk_token",
    "[CLS]": "cls_token",
    "[SEP]": "sep_token",
    "[MASK]": "mask_token",
}


def vocab_tokens(tokenizer: Tokenizer) -> list[str]:
    """The vocabulary in id order; ids must be 0..n-1 without gaps."""
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    tokens: list[str | None] = [None] * len(vocab)
    for token, index in vocab.items():
        if not 0 <= index < len(tokens) or tokens[index] is not None:
            raise BertforgeError("tokenizer vocabulary ids are not contiguous from 0")
        tokens[index] = token
    return tokens  # every slot filled: as many distinct ids in range as slots


def transformers_config(params: VocabParams) -> dict[str, Any]:
    """tokenizer_config.json: what `transformers.AutoTokenizer.from_pretrained` needs.

    `PreTrainedTokenizerFast` loads tokenizer.json as it is; transformers' `BertTokenizer`
    would rebuild the pipeline from these flags with HF's `BertNormalizer` and a 100-character
    word limit, and so differ from BERT where docs/vocab.md says. The BERT flags are recorded
    for people and tools that read them.
    """
    extra = [token for token in params.special_tokens if token not in SPECIAL_TOKEN_ROLES]
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "do_lower_case": params.lowercase,
        "strip_accents": params.strip_accents,
        "tokenize_chinese_chars": params.tokenize_chinese_chars,
        "model_max_length": MODEL_MAX_LENGTH,
        "model_input_names": ["input_ids", "token_type_ids", "attention_mask"],
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        **{role: token for token, role in SPECIAL_TOKEN_ROLES.items()},
        "additional_special_tokens": extra,
    }


def write_tokenizer(tokenizer: Tokenizer, directory: Path, params: VocabParams) -> None:
    """Write vocab.txt, tokenizer.json and the transformers configs into `directory`."""
    directory = Path(directory)
    tokens = vocab_tokens(tokenizer)
    unsafe = [token for token in tokens if len(token.splitlines()) != 1]
    if unsafe:
        raise BertforgeError(f"vocabulary token {unsafe[0]!r} cannot be written one per line")
    (directory / VOCAB_FILE).write_text("".join(f"{t}\n" for t in tokens), encoding="utf-8")
    tokenizer.save(str(directory / TOKENIZER_FILE), pretty=True)
    config = transformers_config(params)
    special_map = {role: config[role] for role in SPECIAL_TOKEN_ROLES.values()}
    special_map["additional_special_tokens"] = config["additional_special_tokens"]
    for name, payload in ((TOKENIZER_CONFIG_FILE, config), (SPECIAL_TOKENS_MAP_FILE, special_map)):
        text = json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        (directory / name).write_text(text, encoding="utf-8")


def load_tokenizer(directory: Path) -> Tokenizer:
    """The tokenizer of a vocab output (or of an export holding its files), checked.

    A missing or unreadable directory, tokenizer.json or vocab.txt, a vocab.txt that does not
    list tokenizer.json's vocabulary in id order, or a missing BERT special token is a one-line
    `BertforgeError`. Literal special-token strings in the text are tokenized as text, as the
    original BERT does (transformers' convention of matching them is off).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise BertforgeError(f"{directory}: tokenizer directory not found (run `dvc repro vocab`)")
    tokenizer_path, vocab_path = directory / TOKENIZER_FILE, directory / VOCAB_FILE
    for path in (tokenizer_path, vocab_path):
        if not path.is_file():
            raise BertforgeError(f"{path}: not found (run `dvc repro vocab`)")
    try:
        tokenizer = Tokenizer.from_file(str(tokenizer_path))
    except Exception as error:  # tokenizers raises a bare Exception on a malformed file
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BertforgeError(f"{tokenizer_path}: not a valid tokenizer ({first_line})") from None
    try:
        listed = vocab_path.read_text(encoding="utf-8").split("\n")
    except (OSError, UnicodeDecodeError) as error:
        raise BertforgeError(f"{vocab_path}: unreadable ({error})") from None
    if listed and listed[-1] == "":
        listed.pop()
    actual = vocab_tokens(tokenizer)
    if listed != actual:
        index = next(
            (i for i, (a, b) in enumerate(zip(listed, actual, strict=False)) if a != b),
            min(len(listed), len(actual)),
        )
        raise BertforgeError(
            f"{vocab_path}: disagrees with {TOKENIZER_FILE} ({len(listed)} vs {len(actual)} "
            f"tokens, first difference at id {index})"
        )
    special = special_token_ids(tokenizer)
    missing = [token for token in BERT_SPECIAL_TOKENS if token not in special]
    if missing:
        raise BertforgeError(f"{tokenizer_path}: special token {missing[0]} is missing")
    tokenizer.encode_special_tokens = True
    return tokenizer


def special_token_ids(tokenizer: Tokenizer) -> dict[str, int]:
    """The special tokens and their ids, e.g. ``{"[PAD]": 0, "[UNK]": 1, ...}``."""
    return {
        token.content: index
        for index, token in sorted(tokenizer.get_added_tokens_decoder().items())
        if token.special
    }


def vocab_digest(directory: Path) -> str:
    """sha256 of vocab.txt: later stages record it to prove they used the same vocabulary."""
    path = Path(directory) / VOCAB_FILE
    try:
        return sha256_file(path)
    except OSError as error:
        raise BertforgeError(f"{path}: unreadable ({error.strerror})") from None


@dataclass(frozen=True)
class TokenizerInfo:
    """What instance creation needs to know about data/tokenizer/, checked once up front."""

    directory: Path
    vocab_size: int
    special_ids: dict[str, int]
    digest: str

    @property
    def id_dtype(self) -> np.dtype:
        return np.dtype(id_dtype_name(self.vocab_size))


def inspect_tokenizer(directory: Path) -> TokenizerInfo:
    """Load data/tokenizer/ once up front and describe it.

    `load_tokenizer` refuses, in one line, a missing tokenizer, a vocab.txt that
    disagrees with tokenizer.json and a missing special token.
    """
    tokenizer = load_tokenizer(Path(directory))
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    special_ids = special_token_ids(tokenizer)
    return TokenizerInfo(
        directory=Path(directory),
        vocab_size=len(vocab),
        special_ids={token: special_ids[token] for token in BERT_SPECIAL_TOKENS},
        digest=vocab_digest(Path(directory)),
    )
