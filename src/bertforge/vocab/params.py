"""params.yaml `vocab`, validated once at stage start."""

from __future__ import annotations

from dataclasses import dataclass

from bertforge.params import require
from bertforge.parent import ParentSpec
from bertforge.tokenizer.pipeline import BERT_SPECIAL_TOKENS

LARGEST_VOCAB_SIZE = 1_000_000  # HF's trainer reserves memory for vocab_size tokens up front


@dataclass(frozen=True)
class VocabParams:
    """params.yaml `vocab`: the WordPiece trainer and the BERT text pipeline."""

    vocab_size: int
    lowercase: bool
    strip_accents: bool | None  # None: strip exactly when lowercasing, as BERT does
    tokenize_chinese_chars: bool
    min_frequency: int
    limit_alphabet: int
    special_tokens: tuple[str, ...]
    init_from: ParentSpec | None = None  # a parent checkpoint's vocabulary instead of training
    extend_with: int = 0  # domain WordPieces appended to the parent's (docs/vocab.md)
    alphabet_coverage: float = 0.9999  # the alphabet grows past limit_alphabet to cover this
    max_unk_rate: float = 0.005  # a higher held-out [UNK] rate fails the stage

    def __post_init__(self) -> None:
        require(
            self.limit_alphabet >= 1, "limit_alphabet", "must be at least 1", self.limit_alphabet
        )
        require(
            0.0 < self.alphabet_coverage <= 1.0,
            "alphabet_coverage",
            "must be in (0, 1]",
            self.alphabet_coverage,
        )
        require(
            0.0 <= self.max_unk_rate <= 1.0, "max_unk_rate", "must be in [0, 1]", self.max_unk_rate
        )
        require(self.extend_with >= 0, "extend_with", "must be at least 0", self.extend_with)
        require(
            self.extend_with == 0 or self.init_from is not None,
            "extend_with",
            "needs vocab.init_from (a parent vocabulary to extend)",
            self.extend_with,
        )
        require(self.min_frequency >= 1, "min_frequency", "must be at least 1", self.min_frequency)
        missing = [token for token in BERT_SPECIAL_TOKENS if token not in self.special_tokens]
        require(
            not missing,
            "special_tokens",
            f"must contain {', '.join(BERT_SPECIAL_TOKENS)} (missing {', '.join(missing)})",
            list(self.special_tokens),
        )
        duplicates = sorted({t for t in self.special_tokens if self.special_tokens.count(t) > 1})
        require(not duplicates, "special_tokens", "must be unique", duplicates)
        malformed = [t for t in self.special_tokens if not t or t != "".join(t.split())]
        require(not malformed, "special_tokens", "must be non-empty, without whitespace", malformed)
        smallest = len(self.special_tokens) + self.limit_alphabet
        require(
            self.vocab_size > smallest,
            "vocab_size",
            f"must exceed the special tokens plus the alphabet (len(special_tokens) + "
            f"limit_alphabet = {smallest})",
            self.vocab_size,
        )
        require(
            self.vocab_size <= LARGEST_VOCAB_SIZE,
            "vocab_size",
            f"must be at most {LARGEST_VOCAB_SIZE:,}",
            self.vocab_size,
        )

    @property
    def strips_accents(self) -> bool:
        return self.lowercase if self.strip_accents is None else self.strip_accents
