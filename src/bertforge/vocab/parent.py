"""A parent checkpoint's vocabulary (``vocab.init_from``), checked and rebuilt as our tokenizer.

The parent must hold a BERT WordPiece tokenizer (vocab.txt and/or a WordPiece tokenizer.json)
whose normalisation (lowercase, strip_accents, tokenize_chinese_chars) is the one the vocab
params say the stage applies. Its vocabulary, ids unchanged, goes into our own tokenizer pipeline
(`build_tokenizer`), so data/tokenizer has the layout a trained vocabulary has and examples and
pretrain read it unchanged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from bertforge.errors import BertforgeError
from bertforge.parent import Parent, resolve_parent
from bertforge.tokenizer.files import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, VOCAB_FILE
from bertforge.tokenizer.pipeline import CONTINUING_SUBWORD_PREFIX, build_tokenizer
from bertforge.vocab.extend import VocabExtension, extend_vocabulary
from bertforge.vocab.params import VocabParams

PARAM = "vocab.init_from"
# transformers' BertTokenizer defaults: what a bare vocab.txt is read with
BERT_TOKENIZER_DEFAULTS = {"lowercase": True, "strip_accents": None, "tokenize_chinese_chars": True}


@dataclass(frozen=True)
class Normalisation:
    """The text normalisation a WordPiece tokenizer applies before splitting."""

    lowercase: bool
    strips_accents: bool
    tokenize_chinese_chars: bool
    source: str  # the file the settings were read from


@dataclass(frozen=True)
class ParentVocabulary:
    """The parent, its tokens in id order, and the settings it was made with."""

    parent: Parent
    tokens: list[str]
    normalisation: Normalisation


def load_parent_vocabulary(params: VocabParams) -> ParentVocabulary:
    """Resolve `vocab.init_from`, read its WordPiece vocabulary and check it fits the params."""
    assert params.init_from is not None
    parent = resolve_parent(params.init_from, PARAM)
    tokenizer_json = read_tokenizer_json(parent.directory / TOKENIZER_FILE)
    tokens = read_vocab_txt(parent.directory / VOCAB_FILE)
    if tokenizer_json is not None:
        listed = wordpiece_tokens(tokenizer_json, parent.directory / TOKENIZER_FILE)
        if tokens is not None and tokens != listed:
            raise BertforgeError(
                f"{PARAM}: {parent.directory / VOCAB_FILE} disagrees with its {TOKENIZER_FILE} "
                f"({len(tokens)} vs {len(listed)} tokens)"
            )
        tokens = listed
    if tokens is None:
        raise BertforgeError(
            f"{PARAM}: {parent.directory} has no BERT WordPiece tokenizer "
            f"({VOCAB_FILE} or a WordPiece {TOKENIZER_FILE})"
        )
    normalisation = read_normalisation(parent.directory, tokenizer_json)
    check_normalisation(normalisation, params, parent)
    missing = [token for token in params.special_tokens if token not in set(tokens)]
    if missing:
        raise BertforgeError(
            f"params.yaml: vocab.special_tokens lists {missing[0]}, which the parent vocabulary "
            f"{parent.label} does not have ({PARAM}); list only tokens it has"
        )
    return ParentVocabulary(parent, tokens, normalisation)


def tokenizer_from_parent(
    vocabulary: ParentVocabulary, train_dir: Path, params: VocabParams
) -> tuple[Tokenizer, VocabExtension | None]:
    """Our tokenizer pipeline around the parent's vocabulary (ids unchanged), extended with
    `vocab.extend_with` domain pieces when asked."""
    tokens, extension = vocabulary.tokens, None
    if params.extend_with:
        tokens, extension = extend_vocabulary(vocabulary.tokens, train_dir, params)
    return build_tokenizer({token: index for index, token in enumerate(tokens)}, params), extension


def parent_metrics(
    vocabulary: ParentVocabulary, extension: VocabExtension | None
) -> dict[str, int | str]:
    """metrics/vocab.json entries of a parent vocabulary: whose, how large, what was added."""
    return {
        "parent": vocabulary.parent.label,
        "parent_vocab_size": len(vocabulary.tokens),
        "added_pieces": len(extension.added) if extension else 0,
    }


def read_tokenizer_json(path: Path, param: str = PARAM) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BertforgeError(f"{param}: {path}: not a readable tokenizer ({error})") from None


def read_vocab_txt(path: Path, param: str = PARAM) -> list[str] | None:
    """vocab.txt's tokens in id order (one a line); a repeated token is an error naming it."""
    tokens = read_vocab_lines(path)
    if tokens is None:
        return None
    seen: dict[str, int] = {}
    for line, token in enumerate(tokens, start=1):
        if token in seen:
            raise BertforgeError(
                f"{param}: {path}: line {line} repeats the token {token!r} of line {seen[token]}"
            )
        seen[token] = line
    return tokens


def read_vocab_lines(path: Path) -> list[str] | None:
    """vocab.txt's lines, one token each in id order, as they are (None: no such file)."""
    if not path.is_file():
        return None
    tokens = path.read_text(encoding="utf-8").split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    return tokens


def wordpiece_tokens(tokenizer: dict[str, Any], path: Path, param: str = PARAM) -> list[str]:
    """The vocabulary of a WordPiece tokenizer.json in id order; another model is an error."""
    model = tokenizer.get("model") or {}
    kind = model.get("type")
    if kind != "WordPiece":
        raise BertforgeError(
            f"{param}: {path}: a {kind or 'unknown'} tokenizer, not BERT's WordPiece; continue "
            "from a BERT checkpoint, or set vocab.init_from: null to train a vocabulary"
        )
    prefix = model.get("continuing_subword_prefix", CONTINUING_SUBWORD_PREFIX)
    if prefix != CONTINUING_SUBWORD_PREFIX:
        raise BertforgeError(
            f"{param}: {path}: continuing_subword_prefix is {prefix!r}, BERT's is "
            f"{CONTINUING_SUBWORD_PREFIX!r}"
        )
    vocab = model.get("vocab") or {}
    tokens: list[str | None] = [None] * len(vocab)
    for token, index in vocab.items():
        if not 0 <= index < len(tokens) or tokens[index] is not None:
            raise BertforgeError(f"{param}: {path}: vocabulary ids are not contiguous from 0")
        tokens[index] = token
    return [token for token in tokens if token is not None]


def read_normalisation(directory: Path, tokenizer: dict[str, Any] | None) -> Normalisation:
    """What the parent tokenizer does to text: its tokenizer.json's BertNormalizer, else the
    flags of its tokenizer_config.json (bertforge writes them), else BertTokenizer's defaults."""
    bert_normalizer = find_bert_normalizer((tokenizer or {}).get("normalizer"))
    if bert_normalizer is not None:
        lowercase = bool(bert_normalizer.get("lowercase", True))
        strip = bert_normalizer.get("strip_accents")
        return Normalisation(
            lowercase=lowercase,
            strips_accents=lowercase if strip is None else bool(strip),
            tokenize_chinese_chars=bool(bert_normalizer.get("handle_chinese_chars", True)),
            source=f"{directory / TOKENIZER_FILE} (BertNormalizer)",
        )
    config_path = directory / TOKENIZER_CONFIG_FILE
    config: dict[str, Any] = {}
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BertforgeError(f"{PARAM}: {config_path}: not readable ({error})") from None
    defaults = BERT_TOKENIZER_DEFAULTS
    lowercase = bool(config.get("do_lower_case", defaults["lowercase"]))
    strip = config.get("strip_accents", defaults["strip_accents"])
    return Normalisation(
        lowercase=lowercase,
        strips_accents=lowercase if strip is None else bool(strip),
        tokenize_chinese_chars=bool(
            config.get("tokenize_chinese_chars", defaults["tokenize_chinese_chars"])
        ),
        source=str(config_path) if config else "BertTokenizer's defaults",
    )


def find_bert_normalizer(normalizer: Any) -> dict[str, Any] | None:
    """The BertNormalizer of a tokenizer.json normalizer (possibly inside a Sequence)."""
    if not isinstance(normalizer, dict):
        return None
    if normalizer.get("type") == "BertNormalizer":
        return normalizer
    for step in normalizer.get("normalizers") or []:
        found = find_bert_normalizer(step)
        if found is not None:
            return found
    return None


def check_normalisation(found: Normalisation, params: VocabParams, parent: Parent) -> None:
    """The parent's vocabulary only fits text normalised as it was: the params must agree."""
    wanted = {
        "lowercase": (params.lowercase, found.lowercase),
        "strip_accents": (params.strips_accents, found.strips_accents),
        "tokenize_chinese_chars": (params.tokenize_chinese_chars, found.tokenize_chinese_chars),
    }
    for name, (ours, theirs) in wanted.items():
        if ours != theirs:
            raise BertforgeError(
                f"params.yaml: vocab.{name} is {str(ours).lower()}, but the parent tokenizer "
                f"{parent.label} has {str(theirs).lower()} ({found.source}); set vocab.{name}: "
                f"{str(theirs).lower()} to continue from it ({PARAM})"
            )
