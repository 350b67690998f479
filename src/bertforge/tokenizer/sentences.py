"""Sentences → token ids, fast: exactly the ids of the BERT pipeline's ``encode_batch``.

`SentenceTokenizer` encodes each distinct word once; `AsciiFastPath` does BERT's steps itself
for words of printable ASCII. docs/examples.md ("Tokenization") measures both.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tokenizers import models

ASCII_PUNCTUATION = r"([!-/:-@\[-`{-~])"
"""BERT's punctuation among ASCII characters (33–47, 58–64, 91–96, 123–126), as an RE2 group."""
PRINTABLE_ASCII = r"^[ -~]*$"


@dataclass(frozen=True)
class AsciiFastPath:
    """What BERT's pipeline does to a word of printable ASCII, done without it: lowercase it
    (when the tokenizer lowercases), cut it at `ASCII_PUNCTUATION`, then WordPiece each piece
    (`tokenize`: the tokenizer's own WordPiece model)."""

    tokenize: Callable[[str], list]
    lowercase: bool


def ascii_fast_path(tokenizer: Any) -> AsciiFastPath | None:
    """The fast path for a BERT pipeline's printable-ASCII words; None for another model.

    On printable ASCII the original BERT's cleaning, accent stripping and Chinese-character
    rules do nothing, its lowercasing is ASCII lowercasing, and its pre-tokenizer splits at
    spaces and makes every punctuation character a word of its own. `SentenceTokenizer` checks
    the whole path against the full pipeline before using it.
    """
    if not isinstance(tokenizer.model, models.WordPiece):
        return None
    lowercase = '"Lowercase"' in json.dumps(json.loads(tokenizer.to_str()).get("normalizer"))
    return AsciiFastPath(tokenizer.model.tokenize, lowercase)


ASCII_PROBE = [
    " ".join(chr(code) for code in range(0x21, 0x7F)),
    "".join(chr(code) for code in range(0x20, 0x7F)),
    "Hello WORLD, don't stop: U.S.A. (1984) e-mail,x",
    "[MASK] [sep] ##ing [UNK]word",
    "x" * 120 + " " + "y" * 99 + "." + "z" * 101,
]
"""Sentences on which the fast path must agree with the full pipeline before it is used."""


class SentenceTokenizer:
    """Sentences → token ids, encoding each distinct word once.

    BERT's text pipeline never looks across an ASCII space: cleaning, lowercasing (the final
    sigma rule needs a cased letter next to the sigma), NFD and accent stripping act within a
    word, and the pre-tokenizer splits at spaces first. So a sentence's ids are its words' ids
    back to back, and a word seen before costs a lookup instead of a trip through the tokenizer
    (tests check the ids equal whole-sentence ``encode_batch``). Splitting, deduplicating and
    looking up run in Arrow's C++ kernels; new words go through the tokenizer in large
    pre-tokenized batches. The memo holds at most `max_words` words and starts afresh when
    full: memory stays bounded.

    Words of printable ASCII go further (`AsciiFastPath`): they are lowercased and cut at
    punctuation here, as BERT's pipeline does to them, so that "The", "the," and "(the" share
    one memo entry, and new pieces go straight to the WordPiece model instead of through the
    exact regex pipeline. The whole path is checked against the full pipeline on `ASCII_PROBE`
    at start and left unused if they disagree.
    """

    def __init__(self, tokenizer: Any, id_dtype: np.dtype, max_words: int = 200_000) -> None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        self.id_dtype = np.dtype(id_dtype)
        self.max_words = max_words
        self.fast_path = ascii_fast_path(tokenizer)
        if self.fast_path is not None and not self._agrees_with_full_pipeline(ASCII_PROBE):
            self.fast_path = None
        self._forget()

    def _agrees_with_full_pipeline(self, sentences: list[str]) -> bool:
        self._forget()
        expected = self.tokenizer.encode_batch(sentences, add_special_tokens=False)
        token_ids, lengths = self.encode(pa.array(sentences, pa.string()))
        return lengths.tolist() == [len(e.ids) for e in expected] and token_ids.tolist() == [
            i for e in expected for i in e.ids
        ]

    def _forget(self) -> None:
        self.word_number: dict[str, int] = {}
        self.word_token_ids = np.zeros(1 << 16, dtype=self.id_dtype)  # all words' ids, in a row
        self.word_starts = np.zeros(1 << 12, dtype=np.int64)
        self.word_lengths = np.zeros(1 << 12, dtype=np.int64)
        self.stored_ids = 0

    def encode(self, sentences: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
        """The sentences' ids back to back, and the number of ids of each sentence."""
        words_of_sentences = pc.split_pattern(sentences, " ")
        words = pc.dictionary_encode(words_of_sentences.flatten())
        distinct_ids, distinct_offsets = self._distinct_word_ids(words.dictionary)
        occurrences = words.indices.to_numpy()
        starts = distinct_offsets[:-1][occurrences]
        lengths = distinct_offsets[1:][occurrences] - starts
        token_ids = distinct_ids[concatenated_ranges(starts, lengths)]
        words_per_sentence = pc.list_value_length(words_of_sentences).to_numpy()
        sentence_of_word = np.repeat(np.arange(len(sentences)), words_per_sentence)
        sentence_lengths = np.bincount(sentence_of_word, weights=lengths, minlength=len(sentences))
        return token_ids, sentence_lengths.astype(np.int64)

    def _distinct_word_ids(self, words: pa.StringArray) -> tuple[np.ndarray, np.ndarray]:
        """The ids of each of `words` (distinct), back to back, and their offsets."""
        pieces_of_words = self._pieces(words)
        pieces = pc.dictionary_encode(pieces_of_words.flatten())
        numbers = self._numbers(pieces.dictionary.to_pylist())[pieces.indices.to_numpy()]
        lengths = self.word_lengths[numbers]
        token_ids = self.word_token_ids[concatenated_ranges(self.word_starts[numbers], lengths)]
        word_of_piece = pc.list_parent_indices(pieces_of_words).to_numpy()
        per_word = np.bincount(word_of_piece, weights=lengths, minlength=len(words))
        return token_ids, np.concatenate([[0], np.cumsum(per_word, dtype=np.int64)])

    def _pieces(self, words: pa.StringArray) -> pa.ListArray:
        """Each word as the pieces the memo knows it by: itself, or with the fast path, a word
        of printable ASCII lowercased (when the tokenizer lowercases) and cut at punctuation."""
        if self.fast_path is None:
            return pa.ListArray.from_arrays(pa.array(np.arange(len(words) + 1, dtype=np.int32)),
                                            words)  # fmt: skip
        cut = words
        if self.fast_path.lowercase:
            cut = pc.ascii_lower(cut)
        cut = pc.replace_substring_regex(cut, ASCII_PUNCTUATION, r" \1 ")
        cut = pc.if_else(pc.match_substring_regex(words, PRINTABLE_ASCII), cut, words)
        return pc.split_pattern(cut, " ")  # a word with other characters has no space: one piece

    def _numbers(self, distinct_words: list[str]) -> np.ndarray:
        """The memo's number of each word, encoding the words it does not know yet."""
        count = len(distinct_words)
        numbers = np.fromiter(
            map(self.word_number.get, distinct_words, itertools.repeat(-1, count)), np.int64, count
        )
        unknown = np.flatnonzero(numbers < 0)
        if len(self.word_number) + len(unknown) > self.max_words:
            self._forget()
            unknown = np.arange(count)
        if len(unknown) == 0:
            return numbers
        unknown_words = [distinct_words[index] for index in unknown.tolist()]
        for start in range(0, len(unknown_words), 4096):
            self._learn(unknown_words[start : start + 4096])
        numbers[unknown] = list(map(self.word_number.__getitem__, unknown_words))
        return numbers

    def _learn(self, words: list[str]) -> None:
        """Encode new words: pieces of printable ASCII straight through the WordPiece model (the
        fast path), the rest through the full pipeline (the memo's numbering follows that
        order; the ids do not depend on it)."""
        if self.fast_path is None:
            self._store_encoded(words)
            return
        ascii_words: list[str] = []
        other_words: list[str] = []
        for word in words:
            (ascii_words if word.isascii() and word.isprintable() else other_words).append(word)
        if ascii_words:
            tokenize = self.fast_path.tokenize
            ids_of_words = [[token.id for token in tokenize(word)] for word in ascii_words]
            lengths = np.fromiter(map(len, ids_of_words), np.int64, len(ascii_words))
            token_ids = np.fromiter(
                itertools.chain.from_iterable(ids_of_words), self.id_dtype, int(lengths.sum())
            )
            self._store(ascii_words, token_ids, lengths)
        if other_words:
            self._store_encoded(other_words)

    def _store_encoded(self, words: list[str]) -> None:
        """Encode `words` as one pre-tokenized sequence; `word_ids` says which token is whose."""
        encoding = self.tokenizer.encode(words, is_pretokenized=True, add_special_tokens=False)
        lengths = np.bincount(np.array(encoding.word_ids, dtype=np.int64), minlength=len(words))
        self._store(words, np.array(encoding.ids, dtype=self.id_dtype), lengths)

    def _store(self, words: list[str], token_ids: np.ndarray, lengths: np.ndarray) -> None:
        """Remember `words`, whose ids are `token_ids`, `lengths` of them per word."""
        first = len(self.word_number)
        self.word_starts = _grown(self.word_starts, first + len(words))
        self.word_lengths = _grown(self.word_lengths, first + len(words))
        self.word_starts[first : first + len(words)] = (
            self.stored_ids + np.cumsum(lengths) - lengths
        )
        self.word_lengths[first : first + len(words)] = lengths
        self.word_token_ids = _grown(self.word_token_ids, self.stored_ids + len(token_ids))
        self.word_token_ids[self.stored_ids : self.stored_ids + len(token_ids)] = token_ids
        self.stored_ids += len(token_ids)
        self.word_number.update(zip(words, range(first, first + len(words)), strict=True))


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    """`array`, or a copy at least twice as long when it is shorter than `size`."""
    if size <= len(array):
        return array
    grown = np.zeros(max(size, 2 * len(array)), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])``, vectorized."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    shift = np.repeat(starts - (ends - lengths), lengths)
    return np.arange(total, dtype=np.int64) + shift
