"""MLM/NSP pretraining instances, as google-research/bert ``create_pretraining_data.py`` makes them.

The algorithm keeps the original's steps and names — `create_instances_from_documents` (its
per-document loop), `truncate_seq_pair`, `create_masked_lm_predictions` — and their rules (see
docs/examples.md). What changes is how the work is organised, so that it streams, runs on several
processes and gives the same bytes whatever their number:

* The documents of a split are cut, in order, into fixed **work units** of `negative_pool_size`
  documents (`unit_ranges`). A process claims a unit, reads its documents (`SplitDocuments`),
  tokenizes them at once (`SentenceTokenizer`), makes the unit's instances with the unit's own
  generator, seeded from ``(random_seed, split, unit index)``, and writes them as the unit's own
  shard. Memory is bounded by a unit per process, whatever the size of the corpus.
* A random-next segment B (NSP label 1) is drawn from **another document of the same unit**: the
  unit is the negative pool. The original draws from the whole corpus, which it holds in memory.
* Instances are index arithmetic on the unit's flat token array: a segment is a ``(start, end)``
  span, truncation moves the span's ends, every step of the per-document loop runs for all the
  documents of the unit at once, and instances are assembled and masked for the whole unit with
  numpy.

`create_masked_lm_predictions` (one sequence) and `mask_batch` (a padded batch) are also the
masking of ``masking: dynamic``, which the pretrain stage applies at training time;
`collate_instances` turns a batch of stored instances into padded model inputs.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import json
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from bertforge.errors import BertforgeError
from bertforge.params import require
from bertforge.schemas import examples_arrow_schema, examples_schema, id_dtype_name, validate
from bertforge.shards import count_rows, shard_files, write_shard
from bertforge.vocab import (
    BERT_SPECIAL_TOKENS,
    CONTINUING_SUBWORD_PREFIX,
    load_tokenizer,
    special_token_ids,
    vocab_digest,
)

SPLITS = ("train", "heldout")
EXAMPLES_PARQUET_OPTIONS = {
    "compression_level": 1,
    "use_dictionary": False,
    "use_byte_stream_split": [
        f"{column}.list.element" for column in ("input_ids", "masked_lm_positions", "masked_lm_ids")
    ],
}
"""Token ids compress best split into byte streams, not dictionary-encoded: zstd level 1 this
way writes faster and smaller than the default level 3 (benchmarks/bench_examples.py)."""
IGNORE_INDEX = -100
"""Label of positions and NSP pairs that carry no loss (PyTorch's cross-entropy default)."""


@dataclass(frozen=True)
class ExamplesParams:
    """The ``examples`` section of params.yaml (docs/examples.md explains each knob)."""

    max_seq_length: int = 128
    max_predictions_per_seq: int = 20
    masked_lm_prob: float = 0.15
    dupe_factor: int = 2
    short_seq_prob: float = 0.1
    whole_word_mask: bool = False
    nsp: bool = True
    masking: Literal["static", "dynamic"] = "static"
    random_seed: int = 12345
    negative_pool_size: int = 1000
    num_proc: int = 2

    def __post_init__(self) -> None:
        require(8 <= self.max_seq_length <= 32767, "max_seq_length", "must be in [8, 32767]",
                self.max_seq_length)  # fmt: skip
        most = self.max_num_tokens
        require(
            1 <= self.max_predictions_per_seq <= most,
            "max_predictions_per_seq",
            f"must be in [1, max_seq_length - {self.max_seq_length - most}] = [1, {most}]",
            self.max_predictions_per_seq,
        )
        require(0.0 < self.masked_lm_prob < 1.0, "masked_lm_prob", "must be in (0, 1)",
                self.masked_lm_prob)  # fmt: skip
        require(self.dupe_factor >= 1, "dupe_factor", "must be at least 1", self.dupe_factor)
        require(0.0 <= self.short_seq_prob <= 1.0, "short_seq_prob", "must be in [0, 1]",
                self.short_seq_prob)  # fmt: skip
        require(self.negative_pool_size >= 2, "negative_pool_size", "must be at least 2",
                self.negative_pool_size)  # fmt: skip
        require(self.num_proc >= 1, "num_proc", "must be at least 1", self.num_proc)

    @property
    def max_num_tokens(self) -> int:
        """Room for the segments: [CLS] A [SEP] B [SEP] with NSP, [CLS] A [SEP] without."""
        return self.max_seq_length - (3 if self.nsp else 2)


# --- the tokenizer ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenizerInfo:
    """What instance creation needs to know about data/tokenizer/, checked once up front."""

    directory: Path
    vocab_size: int
    special_ids: dict[str, int]
    digest: str
    continuation_ids: tuple[int, ...]

    @property
    def id_dtype(self) -> np.dtype:
        return np.dtype(id_dtype_name(self.vocab_size))


def inspect_tokenizer(directory: Path) -> TokenizerInfo:
    """Load data/tokenizer/ once up front and describe it.

    `bertforge.vocab.load_tokenizer` refuses, in one line, a missing tokenizer, a vocab.txt that
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
        continuation_ids=tuple(
            sorted(i for token, i in vocab.items() if token.startswith(CONTINUING_SUBWORD_PREFIX))
        ),
    )


# --- a work unit: documents tokenized into one flat array ------------------------------------


@dataclass(frozen=True)
class TokenizedUnit:
    """The documents of one work unit as a flat token array.

    Sentence ``s`` is ``token_ids[sentence_starts[s]:sentence_starts[s + 1]]``; document ``d``
    is sentences ``document_sentences[d][0]`` up to (not including) ``document_sentences[d][1]``.
    Consecutive sentences are contiguous, so any run of sentences is one ``(start, end)`` span.
    Sentences without tokens and documents without sentences are dropped, as the original does.
    """

    token_ids: np.ndarray
    sentence_starts: np.ndarray | list[int]
    document_sentences: np.ndarray | list[tuple[int, int]]

    @property
    def num_documents(self) -> int:
        return len(self.document_sentences)


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
    one memo entry, and new pieces go straight to the WordPiece model, several times faster than
    through the exact regex pipeline. The whole path is checked against the full pipeline on
    `ASCII_PROBE` at start and left unused if they disagree.
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
        token_ids = distinct_ids[_concatenated_ranges(starts, lengths)]
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
        token_ids = self.word_token_ids[_concatenated_ranges(self.word_starts[numbers], lengths)]
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
    from tokenizers import models

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


def _grown(array: np.ndarray, size: int) -> np.ndarray:
    """`array`, or a copy at least twice as long when it is shorter than `size`."""
    if size <= len(array):
        return array
    grown = np.zeros(max(size, 2 * len(array)), dtype=array.dtype)
    grown[: len(array)] = array
    return grown


def tokenize_unit(tokenizer: SentenceTokenizer, documents: pa.ListArray) -> TokenizedUnit:
    """Tokenize every sentence of the unit's documents, without special tokens, into one array."""
    token_ids, lengths = tokenizer.encode(documents.flatten())
    sentences_per_document = pc.list_value_length(documents).to_numpy()
    document_of_sentence = np.repeat(np.arange(len(documents)), sentences_per_document)
    kept = lengths > 0
    sentences_per_document = np.bincount(document_of_sentence[kept], minlength=len(documents))
    sentences_per_document = sentences_per_document[sentences_per_document > 0]
    document_ends = np.cumsum(sentences_per_document)
    return TokenizedUnit(
        token_ids=token_ids,
        sentence_starts=np.concatenate([[0], np.cumsum(lengths[kept])]),
        document_sentences=np.stack([document_ends - sentences_per_document, document_ends], 1),
    )


# --- the steps of the original, for every document of a unit at once ----------------------------

INSTANCE_COLUMNS = ("a_start", "a_end", "b_start", "b_end", "next_sentence_label", "document")
"""The columns of `create_instances_from_documents`' rows: segments as ``[start, end)`` spans of
the unit's token array (B empty without NSP), the label, and the document A comes from."""


def create_instances_from_documents(
    unit: TokenizedUnit, params: ExamplesParams, passes: int, rng: np.random.Generator
) -> np.ndarray:
    """The original's `create_instances_from_document` loop, `passes` times over every document
    of the unit, run for all of them at once: one row per instance (`INSTANCE_COLUMNS`).

    Each (pass, document) is a lane with its own target length and position. A step cuts the
    next chunk of every unfinished lane, so a unit takes as many numpy steps as its longest
    document has chunks, whatever the number of documents. Per lane the rules are the
    original's: sentences are accumulated into a chunk until it reaches the target length
    (drawn once per document: with probability `short_seq_prob` uniform in [2, max_num_tokens])
    or the document ends; A is the chunk's first `a_end` sentences, `a_end` uniform in
    [1, len(chunk) - 1]. With probability 0.5 — always for a one-sentence chunk — B is a random
    continuation from another document of the unit (label 1) and the chunk's unused sentences
    are put back; otherwise B is the rest of the chunk (label 0). Without NSP, A is as many
    whole sentences as fit the target (RoBERTa's DOC-SENTENCES).
    """
    starts = np.asarray(unit.sentence_starts, dtype=np.int64)
    bounds = np.asarray(unit.document_sentences, dtype=np.int64).reshape(-1, 2)
    document = np.tile(np.arange(len(bounds)), passes)
    chunk_start = bounds[document, 0].copy()
    end = bounds[document, 1]
    max_num_tokens = params.max_num_tokens
    short, shorter = rng.random((2, len(document)))
    target = np.where(
        short < params.short_seq_prob, 2 + (shorter * (max_num_tokens - 1)).astype(np.int64),
        max_num_tokens,
    )  # fmt: skip
    step = _next_sentence_pairs if params.nsp else _next_full_sentences
    rows: list[np.ndarray] = []
    lanes = np.flatnonzero(chunk_start < end)
    while len(lanes):
        lane = _Lanes(document[lanes], chunk_start[lanes], end[lanes], target[lanes])
        spans, next_start = step(starts, bounds, lane, rng)
        a_start, a_end, b_start, b_end = truncate_seq_pair(*spans[:4], max_num_tokens, rng)
        rows.append(np.stack([a_start, a_end, b_start, b_end, spans[4], lane.document], axis=1))
        chunk_start[lanes] = next_start
        lanes = lanes[next_start < lane.end]
    return np.concatenate(rows) if rows else np.zeros((0, len(INSTANCE_COLUMNS)), np.int64)


@dataclass(frozen=True)
class _Lanes:
    """The unfinished (pass, document) lanes of a step: their document, the first sentence of
    their next chunk, their document's end sentence and their target length."""

    document: np.ndarray
    chunk_start: np.ndarray
    end: np.ndarray
    target: np.ndarray


Spans = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""a_start, a_end, b_start, b_end (token coordinates), next_sentence_label."""


def _next_sentence_pairs(
    starts: np.ndarray, bounds: np.ndarray, lanes: _Lanes, rng: np.random.Generator
) -> tuple[Spans, np.ndarray]:
    """The next [CLS] A [SEP] B [SEP] chunk of every lane, and where each lane goes on."""
    chunk_start, target = lanes.chunk_start, lanes.target
    # the chunk ends at the first sentence that reaches the target, or at the document's end
    chunk_end = np.minimum(np.searchsorted(starts, starts[chunk_start] + target), lanes.end)
    chunk_sentences = chunk_end - chunk_start
    a_draw, next_draw, other_draw, start_draw = rng.random((4, len(chunk_start)))
    a_end = chunk_start + np.where(
        chunk_sentences == 1, 1, 1 + (a_draw * (chunk_sentences - 1)).astype(np.int64)
    )
    random_next = (chunk_sentences == 1) | (next_draw < 0.5)
    a_start_token, a_end_token = starts[chunk_start], starts[a_end]
    # random continuation: a random start sentence in a random *other* document, sentences
    # until B reaches target - len(A), at least one, no further than that document's end
    other = (other_draw * (len(bounds) - 1)).astype(np.int64)
    other += other >= lanes.document
    other_first, other_end = bounds[other, 0], bounds[other, 1]
    random_start = other_first + (start_draw * (other_end - other_first)).astype(np.int64)
    target_b = target - (a_end_token - a_start_token)
    random_end = np.searchsorted(starts, starts[random_start] + target_b)
    random_end = np.minimum(np.maximum(random_end, random_start + 1), other_end)
    b_start = np.where(random_next, starts[random_start], a_end_token)
    b_end = np.where(random_next, starts[random_end], starts[chunk_end])
    next_start = np.where(random_next, a_end, chunk_end)  # random next: unused sentences back
    label = random_next.astype(np.int64)
    return (a_start_token, a_end_token, b_start, b_end, label), next_start


def _next_full_sentences(
    starts: np.ndarray, bounds: np.ndarray, lanes: _Lanes, rng: np.random.Generator
) -> tuple[Spans, np.ndarray]:
    """Without NSP: the next [CLS] A [SEP] of every lane, A as many whole sentences as fit the
    target (at least one: only a single sentence longer than the sequence is truncated)."""
    chunk_start = lanes.chunk_start
    chunk_end = np.searchsorted(starts, starts[chunk_start] + lanes.target, side="right") - 1
    chunk_end = np.minimum(np.maximum(chunk_end, chunk_start + 1), lanes.end)
    empty = np.zeros_like(chunk_start)
    label = np.full_like(chunk_start, -1)
    return (starts[chunk_start], starts[chunk_end], empty, empty, label), chunk_end


def truncate_seq_pair(
    a_start: np.ndarray,
    a_end: np.ndarray,
    b_start: np.ndarray,
    b_end: np.ndarray,
    max_num_tokens: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shorten each pair of spans A, B to `max_num_tokens` together, one token at a time from
    the longer one.

    B loses the token on ties, and each token goes from the front or the back with probability
    0.5. Removing tokens one by one this way amounts to: all from the longer segment until they
    are level, then alternately B, A, B, …; the number taken from the front is binomial.
    """
    length_a, length_b = a_end - a_start, b_end - b_start
    excess = np.maximum(length_a + length_b - max_num_tokens, 0)
    gap = length_a - length_b
    level_excess = np.maximum(excess - np.abs(gap), 0)
    removed_a = np.where(
        gap >= excess, excess, np.where(-gap >= excess, 0, np.maximum(gap, 0) + level_excess // 2)
    )
    removed_b = excess - removed_a
    front_a = rng.binomial(removed_a, 0.5)
    front_b = rng.binomial(removed_b, 0.5)
    return (
        a_start + front_a,
        a_end - (removed_a - front_a),
        b_start + front_b,
        b_end - (removed_b - front_b),
    )


# --- masking -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class MaskingRule:
    """How many tokens to predict and what they become; shared by static and dynamic masking.

    `continuation` (whole-word masking) marks the vocabulary ids of ``##`` pieces; `None` masks
    single tokens. Random replacements are drawn over the whole vocabulary, special tokens
    included, as in the original (``vocab_words = list(tokenizer.vocab.keys())``).
    """

    masked_lm_prob: float
    max_predictions_per_seq: int
    vocab_size: int
    mask_id: int
    unmaskable_ids: tuple[int, ...]
    continuation: np.ndarray | None = None

    @classmethod
    def create(
        cls,
        masked_lm_prob: float,
        max_predictions_per_seq: int,
        vocab_size: int,
        special_ids: Mapping[str, int],
        continuation_ids: Iterable[int] | None = None,
    ) -> MaskingRule:
        """The rule for a vocabulary; `continuation_ids` (the ``##`` pieces) for whole words."""
        continuation = None
        if continuation_ids is not None:
            continuation = np.zeros(vocab_size, dtype=bool)
            continuation[list(continuation_ids)] = True
        return cls(
            masked_lm_prob=masked_lm_prob,
            max_predictions_per_seq=max_predictions_per_seq,
            vocab_size=vocab_size,
            mask_id=special_ids["[MASK]"],
            unmaskable_ids=(special_ids["[CLS]"], special_ids["[SEP]"]),
            continuation=continuation,
        )

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], vocab: Mapping[str, int]) -> MaskingRule:
        """The rule data/examples/meta.json describes, for `vocab` (token → id)."""
        continuation_ids = None
        if meta["whole_word_mask"]:
            continuation_ids = [
                i for token, i in vocab.items() if token.startswith(CONTINUING_SUBWORD_PREFIX)
            ]
        return cls.create(
            meta["masked_lm_prob"],
            meta["max_predictions_per_seq"],
            meta["vocab_size"],
            meta["special_token_ids"],
            continuation_ids,
        )


def create_masked_lm_predictions(
    token_ids: np.ndarray, rule: MaskingRule, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask one sequence: ``(masked ids, masked_lm_positions ascending, original ids there)``.

    The original's rule: candidates are every position but [CLS] and [SEP], in random order;
    ``num_to_predict = min(max_predictions_per_seq, max(1, round(len * masked_lm_prob)))``; each
    chosen token becomes [MASK] 80% of the time, stays 10%, becomes a random token 10%.
    """
    token_ids = np.asarray(token_ids)
    masked, positions, labels = mask_batch(
        token_ids[None, :], np.array([len(token_ids)]), rule, rng
    )
    count = int((labels[0] != IGNORE_INDEX).sum())
    return masked[0], positions[0, :count], labels[0, :count].astype(token_ids.dtype)


def mask_batch(
    input_ids: np.ndarray, lengths: np.ndarray, rule: MaskingRule, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`create_masked_lm_predictions` for a padded batch ``[batch, width]`` of sequences.

    Positions at or past a row's length (padding) are never chosen. Returns the masked ids
    (same shape and dtype), ``masked_lm_positions [batch, max_predictions_per_seq]`` ascending
    and padded with 0, and ``masked_lm_labels`` (the original ids) padded with `IGNORE_INDEX`.
    """
    input_ids = np.asarray(input_ids)
    lengths = np.asarray(lengths, dtype=np.int64)
    batch, width = input_ids.shape
    in_sequence = np.arange(width) < lengths[:, None]
    candidate = in_sequence
    for unmaskable in rule.unmaskable_ids:
        candidate = candidate & (input_ids != unmaskable)
    num_to_predict = np.rint(lengths * rule.masked_lm_prob).astype(np.int64)
    num_to_predict = np.minimum(rule.max_predictions_per_seq, np.maximum(1, num_to_predict))
    num_to_predict = np.minimum(num_to_predict, candidate.sum(axis=1))
    predictions = rule.max_predictions_per_seq
    if rule.continuation is None:
        positions = _choose_tokens(candidate, in_sequence, num_to_predict, predictions, rng)
        count = num_to_predict
    else:
        word_start = candidate & ~(rule.continuation[input_ids] & _shift_right(candidate))
        chosen = _choose_whole_words(candidate, word_start, num_to_predict, rng)
        chosen_rows, chosen_columns = np.nonzero(chosen)  # ascending within each row
        count = np.bincount(chosen_rows, minlength=batch)
        positions = np.zeros((batch, predictions), dtype=np.int64)
        positions[chosen_rows, _slots(count)] = chosen_columns
    is_prediction = np.arange(predictions) < count[:, None]
    rows = np.broadcast_to(np.arange(batch)[:, None], positions.shape)
    labels = np.where(is_prediction, input_ids[rows, positions].astype(np.int64), IGNORE_INDEX)

    decision = rng.random((batch, predictions))
    random_ids = rng.integers(0, rule.vocab_size, size=(batch, predictions))
    replacement = np.where(
        decision < 0.8, rule.mask_id, np.where(decision < 0.9, labels, random_ids)
    )
    masked = input_ids.copy()
    masked[rows[is_prediction], positions[is_prediction]] = replacement[is_prediction]
    return masked, positions, labels


def _shift_right(flags: np.ndarray) -> np.ndarray:
    shifted = np.zeros_like(flags)
    shifted[:, 1:] = flags[:, :-1]
    return shifted


def _slots(count: np.ndarray) -> np.ndarray:
    """For items grouped by row (`count` per row, in row order): each item's index in its row."""
    return np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)


def _choose_tokens(
    candidate: np.ndarray,
    in_sequence: np.ndarray,
    num_to_predict: np.ndarray,
    predictions: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """A uniformly random subset of `num_to_predict` candidates in each row — what the original
    gets by shuffling the candidates and taking the first ones — as positions
    ``[batch, predictions]``, ascending, then 0.

    Floyd's algorithm, vectorized over rows: at step t, with j = candidates - to_predict + t,
    draw r uniform in [0, j] and take candidate r, or candidate j if r is already taken. A row
    costs `num_to_predict` draws, not one per candidate.
    """
    batch, width = candidate.shape
    num_candidates = candidate.sum(axis=1)
    taken = np.zeros((batch, width), dtype=bool)  # by candidate index
    picks = np.full((batch, predictions), width, dtype=np.int64)  # candidate indexes; width: none
    for step in range(int(num_to_predict.max(initial=0))):
        rows = np.flatnonzero(num_to_predict > step)
        last = num_candidates[rows] - num_to_predict[rows] + step
        drawn = (rng.random(len(rows)) * (last + 1)).astype(np.int64)
        drawn = np.where(taken[rows, drawn], last, drawn)
        taken[rows, drawn] = True
        picks[rows, step] = drawn
    # candidate index → position: step over the row's non-candidates ([CLS], [SEP]) up to it
    skipped_rows, skipped_columns = np.nonzero(in_sequence & ~candidate)
    skipped_count = np.bincount(skipped_rows, minlength=batch)
    skipped = np.full((batch, int(skipped_count.max(initial=0))), width, dtype=np.int64)
    skipped[skipped_rows, _slots(skipped_count)] = skipped_columns
    positions = picks.copy()
    for column in skipped.T:
        positions += column[:, None] <= positions
    positions[picks == width] = width
    positions.sort(axis=1)
    positions[positions == width] = 0
    return positions


def _choose_whole_words(
    candidate: np.ndarray,
    word_start: np.ndarray,
    num_to_predict: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Whole words in a random order; a word that would overshoot `num_to_predict` is skipped."""
    word_index = np.cumsum(word_start, axis=1) - 1
    chosen = np.zeros_like(candidate)
    for row in range(len(candidate)):
        words = word_index[row][candidate[row]]
        word_lengths = np.bincount(words).tolist()
        picked: list[int] = []
        covered = 0
        for word in np.argsort(rng.random(len(word_lengths)), kind="stable").tolist():
            if covered >= num_to_predict[row]:
                break
            if covered + word_lengths[word] > num_to_predict[row]:
                continue
            picked.append(word)
            covered += word_lengths[word]
        chosen[row] = candidate[row] & np.isin(word_index[row], picked)
    return chosen


# --- a unit's instances, as ragged arrays ------------------------------------------------------


@dataclass
class InstanceBatch:
    """Instances as flat arrays plus offsets (row ``i`` is ``values[offsets[i]:offsets[i+1]]``).

    This is the stored form: unpadded, ids in the narrowest unsigned type of the vocabulary.
    """

    input_ids: np.ndarray
    input_offsets: np.ndarray
    segment_b_start: np.ndarray
    masked_lm_positions: np.ndarray
    masked_lm_ids: np.ndarray
    masked_offsets: np.ndarray
    next_sentence_label: np.ndarray

    def __len__(self) -> int:
        return len(self.segment_b_start)

    def to_arrow(self, schema: pa.Schema) -> pa.Table:
        """The instances as a table of the examples contract's columns, built column-wise."""

        def ragged(values: np.ndarray, offsets: np.ndarray, name: str) -> pa.ListArray:
            value_type = schema.field(name).type.value_type
            return pa.ListArray.from_arrays(
                pa.array(offsets.astype(np.int32)), pa.array(values, type=value_type)
            )

        columns = {
            "input_ids": ragged(self.input_ids, self.input_offsets, "input_ids"),
            "segment_b_start": self.segment_b_start,
            "masked_lm_positions": ragged(
                self.masked_lm_positions, self.masked_offsets, "masked_lm_positions"
            ),
            "masked_lm_ids": ragged(self.masked_lm_ids, self.masked_offsets, "masked_lm_ids"),
            "next_sentence_label": self.next_sentence_label,
        }
        return pa.Table.from_arrays(
            [pa.array(columns[field.name], type=field.type) for field in schema], schema=schema
        )

    def rows(self) -> list[dict[str, Any]]:
        """One dict per instance, in the columns of the examples contract."""
        input_ids = _split(self.input_ids, self.input_offsets)
        positions = _split(self.masked_lm_positions, self.masked_offsets)
        masked_ids = _split(self.masked_lm_ids, self.masked_offsets)
        return [
            {
                "input_ids": row_ids,
                "segment_b_start": b_start,
                "masked_lm_positions": row_positions,
                "masked_lm_ids": row_masked_ids,
                "next_sentence_label": label,
            }
            for row_ids, b_start, row_positions, row_masked_ids, label in zip(
                input_ids,
                self.segment_b_start,
                positions,
                masked_ids,
                self.next_sentence_label,
                strict=True,
            )
        ]


def _split(values: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    bounds = offsets.tolist()
    return [values[start:end] for start, end in itertools.pairwise(bounds)]


def _concatenated_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """``concatenate([arange(s, s + n) for s, n in zip(starts, lengths)])``, vectorized."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    shift = np.repeat(starts - (ends - lengths), lengths)
    return np.arange(total, dtype=np.int64) + shift


def assemble_instances(
    token_ids: np.ndarray, spans: np.ndarray, cls_id: int, sep_id: int
) -> InstanceBatch:
    """Build ``[CLS] A [SEP] B [SEP]`` (or ``[CLS] A [SEP]`` without B) for every span row."""
    a_start, a_end, b_start, b_end, label = spans.T
    length_a, length_b = a_end - a_start, b_end - b_start
    has_b = length_b > 0
    lengths = 2 + length_a + np.where(has_b, length_b + 1, 0)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    input_ids = np.empty(int(offsets[-1]), dtype=token_ids.dtype)
    input_ids[offsets[:-1]] = cls_id
    input_ids[offsets[:-1] + 1 + length_a] = sep_id
    input_ids[offsets[1:] - 1] = sep_id
    input_ids[_concatenated_ranges(offsets[:-1] + 1, length_a)] = token_ids[
        _concatenated_ranges(a_start, length_a)
    ]
    input_ids[_concatenated_ranges(offsets[:-1] + 2 + length_a, length_b)] = token_ids[
        _concatenated_ranges(b_start, length_b)
    ]
    empty = np.zeros(0, dtype=np.int16)
    return InstanceBatch(
        input_ids=input_ids,
        input_offsets=offsets,
        segment_b_start=np.where(has_b, 2 + length_a, lengths).astype(np.int16),
        masked_lm_positions=empty,
        masked_lm_ids=np.zeros(0, dtype=token_ids.dtype),
        masked_offsets=np.zeros(len(lengths) + 1, dtype=np.int64),
        next_sentence_label=label.astype(np.int8),
    )


def pad_ragged(values: np.ndarray, offsets: np.ndarray, pad_value: int, width: int | None = None):
    """Rows of a ragged array as a ``[rows, width]`` matrix; returns it and the row lengths."""
    lengths = np.diff(offsets)
    width = int(lengths.max(initial=0)) if width is None else width
    padded = np.full((len(lengths), width), pad_value, dtype=values.dtype)
    padded[np.arange(width) < lengths[:, None]] = values
    return padded, lengths


def mask_instances(instances: InstanceBatch, rule: MaskingRule, rng: np.random.Generator) -> None:
    """Static masking: substitute the masks into `instances` and record what was there."""
    padded, lengths = pad_ragged(instances.input_ids, instances.input_offsets, 0)
    masked, positions, labels = mask_batch(padded, lengths, rule, rng)
    is_prediction = labels != IGNORE_INDEX
    instances.input_ids = masked[np.arange(masked.shape[1]) < lengths[:, None]]
    instances.masked_lm_positions = positions[is_prediction].astype(np.int16)
    instances.masked_lm_ids = labels[is_prediction].astype(instances.input_ids.dtype)
    instances.masked_offsets = np.concatenate([[0], np.cumsum(is_prediction.sum(axis=1))])


# --- one work unit, start to end ---------------------------------------------------------------


@dataclass(frozen=True)
class WorkUnit:
    """Documents `first_document` … of one split (their sentences), with their own generator."""

    split_index: int
    unit_index: int
    first_document: int
    documents: pa.ListArray


@dataclass(frozen=True)
class UnitSettings:
    """Everything a worker needs besides the unit itself."""

    params: ExamplesParams
    tokenizer: TokenizerInfo
    dupe_factors: tuple[int, ...]  # per split
    output: Path | None = None  # where the shards go: output/<split>/part-<unit>.parquet
    ingested: Path | None = None  # where the documents come from: ingested/<split>

    def contract(self) -> Any:
        """The pandera contract every shard is checked against before it is written."""
        special = self.tokenizer.special_ids
        return examples_schema(
            vocab_size=self.tokenizer.vocab_size,
            cls_id=special["[CLS]"],
            sep_id=special["[SEP]"],
            max_seq_length=self.params.max_seq_length,
            max_predictions_per_seq=self.params.max_predictions_per_seq,
            nsp=self.params.nsp,
            masking=self.params.masking,
            whole_word_mask=self.params.whole_word_mask,
        )

    def masking_rule(self) -> MaskingRule:
        return MaskingRule.create(
            self.params.masked_lm_prob,
            self.params.max_predictions_per_seq,
            self.tokenizer.vocab_size,
            self.tokenizer.special_ids,
            self.tokenizer.continuation_ids if self.params.whole_word_mask else None,
        )


def unit_generator(random_seed: int, split_index: int, unit_index: int) -> np.random.Generator:
    """The generator of one unit: independent of every other unit and of the worker running it."""
    return np.random.default_rng(np.random.SeedSequence([random_seed, split_index, unit_index]))


def create_unit_instances(
    unit: TokenizedUnit,
    settings: UnitSettings,
    dupe_factor: int,
    rng: np.random.Generator,
    where: str = "",
) -> InstanceBatch:
    """`dupe_factor` passes over the unit's documents, shuffled, then masked (static masking)."""
    params = settings.params
    if params.nsp and unit.num_documents < 2:
        raise BertforgeError(
            f"{where}: nsp needs at least two documents with tokens per unit, found "
            f"{unit.num_documents} (set examples.nsp false or add documents)"
        )
    rows = create_instances_from_documents(unit, params, dupe_factor, rng)
    span_rows = rows[rng.permutation(len(rows)), :5]
    special = settings.tokenizer.special_ids
    instances = assemble_instances(unit.token_ids, span_rows, special["[CLS]"], special["[SEP]"])
    if params.masking == "static":
        mask_instances(instances, settings.masking_rule(), rng)
    return instances


@dataclass
class UnitResult:
    """What a worker sends back once the unit's shard is written: the counts behind the
    metrics."""

    split_index: int
    counts: dict[str, int]
    documents: int


class _Worker:
    """Per-process state: the tokenizer is loaded once per worker, not once per unit."""

    settings: UnitSettings | None = None
    tokenizer: SentenceTokenizer | None = None
    contract: Any = None
    arrow_schema: pa.Schema | None = None
    shared: Any = None  # counters shared by all the processes: next unit, documents done


def _start_worker(settings: UnitSettings, shared: Any) -> None:
    """Load what a process needs to make units; a forked worker finds it already loaded."""
    if _Worker.settings is settings and _Worker.shared is shared:
        return
    # num_proc is the parallelism: keep the Rust tokenizer on this process's one core
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    _Worker.settings = settings
    _Worker.shared = shared
    _Worker.tokenizer = SentenceTokenizer(
        load_tokenizer(settings.tokenizer.directory), settings.tokenizer.id_dtype
    )
    _Worker.contract = settings.contract()
    _Worker.arrow_schema = examples_arrow_schema(settings.tokenizer.vocab_size)


def unit_shard(split: str, unit_index: int) -> str:
    """The shard of a unit, relative to data/examples: one shard per unit, in unit order."""
    return f"{split}/part-{unit_index:05d}.parquet"


def process_unit(unit: WorkUnit) -> UnitResult:
    """Tokenize a unit, create its instances and write them as its shard, in a started worker."""
    settings = _Worker.settings
    if settings is None or settings.output is None:
        raise RuntimeError("process_unit runs in a worker started by _start_worker")
    tokenized = tokenize_unit(_Worker.tokenizer, unit.documents)
    rng = unit_generator(settings.params.random_seed, unit.split_index, unit.unit_index)
    split = SPLITS[unit.split_index]
    where = (
        f"data/ingested/{split} documents {unit.first_document}"
        f"-{unit.first_document + len(unit.documents) - 1}"
    )
    dupe_factor = settings.dupe_factors[unit.split_index]
    instances = create_unit_instances(tokenized, settings, dupe_factor, rng, where)
    shard = unit_shard(split, unit.unit_index)
    write_shard(
        instances.to_arrow(_Worker.arrow_schema),
        settings.output / shard,
        validate=lambda frame: validate(_Worker.contract, frame, f"data/examples/{shard}"),
        arrow_lists=True,
        parquet_options=EXAMPLES_PARQUET_OPTIONS,
    )
    counts = instance_statistics(instances, settings.tokenizer.special_ids["[MASK]"])
    return UnitResult(unit.split_index, counts, len(unit.documents))


def instance_statistics(instances: InstanceBatch, mask_id: int) -> dict[str, int]:
    """Counts behind metrics/examples.json (summed over units, then turned into ratios)."""
    row_of_prediction = np.repeat(np.arange(len(instances)), np.diff(instances.masked_offsets))
    at_positions = instances.input_ids[
        instances.input_offsets[:-1][row_of_prediction] + instances.masked_lm_positions
    ]
    became_mask = at_positions == mask_id
    kept = ~became_mask & (at_positions == instances.masked_lm_ids)
    labels = instances.next_sentence_label
    return {
        "instances": len(instances),
        "tokens": len(instances.input_ids),
        "masked": len(instances.masked_lm_positions),
        "masked_as_mask": int(became_mask.sum()),
        "masked_kept": int(kept.sum()),
        "masked_random": int((~became_mask & ~kept).sum()),
        "nsp_pairs": int((labels >= 0).sum()),
        "random_next": int((labels == 1).sum()),
    }


def unit_ranges(documents: int, unit_size: int) -> list[tuple[int, int]]:
    """The work units of a split of `documents` documents, as ``[start, end)`` document ranges:
    `unit_size` each, the last one shorter; a last unit of a single document joins the one
    before it (a unit needs two documents to draw NSP negatives). They depend only on the
    number of documents, never on the processes."""
    starts = list(range(0, documents, unit_size))
    ends = [*starts[1:], documents]
    if len(starts) > 1 and ends[-1] - starts[-1] == 1:
        starts.pop()
        ends[-2:] = [documents]
    return list(zip(starts, ends, strict=True))


class SplitDocuments:
    """The documents of an ingested split, read by index: ``read(start, end)`` decodes only the
    Parquet row groups that hold them (ingest writes row groups of
    `bertforge.corpus.ROW_GROUP_DOCUMENTS` documents). Built from the shards' metadata alone."""

    def __init__(self, split_dir: Path) -> None:
        self.row_groups: list[tuple[Path, int, int, int]] = []  # shard, index, first doc, rows
        first = 0
        for path in shard_files(split_dir):
            metadata = pq.ParquetFile(path).metadata
            for index in range(metadata.num_row_groups):
                rows = metadata.row_group(index).num_rows
                self.row_groups.append((path, index, first, rows))
                first += rows
        self.documents = first
        self._last: tuple[tuple[Path, int], pa.ChunkedArray] | None = None

    def read(self, start: int, end: int) -> pa.ListArray:
        """The sentences of documents ``[start, end)``, as one compact array."""
        chunks: list[pa.Array] = []
        for path, index, first, rows in self.row_groups:
            if first + rows <= start or first >= end:
                continue
            low, high = max(start - first, 0), min(end - first, rows)
            chunks.extend(self._row_group(path, index).slice(low, high - low).chunks)
        return pa.concat_arrays(chunks) if chunks else pa.array([], pa.list_(pa.string()))

    def _row_group(self, path: Path, index: int) -> pa.ChunkedArray:
        """A row group's sentences; the last one read is kept, for units smaller than a row
        group (a smaller `negative_pool_size`, or shards from an older ingest)."""
        if self._last is None or self._last[0] != (path, index):
            table = pq.ParquetFile(path).read_row_group(index, columns=["sentences"])
            self._last = ((path, index), table.column(0))
        return self._last[1]


def process_share(on_unit: Callable[[], None] | None = None) -> dict[str, Counter[str]]:
    """One process's share of the units, in a started worker; returns the counts behind the
    metrics, per split.

    Every process takes the next unit nobody has claimed (a counter in shared memory), reads
    that unit's documents itself and writes its shard itself: nothing but counts crosses
    between processes, and a faster process simply takes more units.
    """
    settings, shared = _Worker.settings, _Worker.shared
    if settings is None or settings.ingested is None:
        raise RuntimeError("process_share runs in a worker started by _start_worker")
    splits = [SplitDocuments(settings.ingested / split) for split in SPLITS]
    units = [
        (split_index, unit_index, start, end)
        for split_index, documents in enumerate(splits)
        for unit_index, (start, end) in enumerate(
            unit_ranges(documents.documents, settings.params.negative_pool_size)
        )
    ]
    totals: dict[str, Counter[str]] = {split: Counter() for split in SPLITS}
    while (claimed := _claim_unit(shared)) < len(units):
        split_index, unit_index, start, end = units[claimed]
        unit = WorkUnit(split_index, unit_index, start, splits[split_index].read(start, end))
        result = process_unit(unit)
        totals[SPLITS[result.split_index]].update(result.counts)
        with shared.get_lock():
            shared[1] += result.documents
        if on_unit is not None:
            on_unit()
    return totals


def _claim_unit(shared: Any) -> int:
    with shared.get_lock():
        shared[0] += 1
        return shared[0] - 1


@contextmanager
def _lean_processes() -> Iterator[None]:
    """While examples run (forked helpers inherit it): one Arrow thread per process, since
    `num_proc` is the parallelism and Arrow's own pool would put more threads than cores to
    work; no cyclic garbage collection, since the work makes no reference cycles and a full
    collection would walk every piece of the word memo; and freed memory kept for reuse (for
    the rest of the process: glibc has no way back to its adaptive default)."""
    threads, collecting = pa.cpu_count(), gc.isenabled()
    pa.set_cpu_count(1)
    gc.disable()
    _reuse_freed_memory()
    try:
        yield
    finally:
        pa.set_cpu_count(threads)
        if collecting:
            gc.enable()


def _reuse_freed_memory() -> None:
    """glibc hands big freed blocks back to the OS at once (mmap, trimming), so each unit's
    numpy temporaries fault their pages in afresh, in every process — up to a fifth of the CPU
    time with two processes. Keep them for reuse instead: blocks up to 64 MB come from the heap,
    which keeps up to 256 MB free. Elsewhere than glibc, nothing to tune."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
    mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD


@contextmanager
def _helper_pool(settings: UnitSettings, shared: Any, helpers: int) -> Iterator[Any]:
    """`helpers` started worker processes besides this one (None for none)."""
    if helpers == 0:
        yield None
        return
    pool = multiprocessing.Pool(helpers, initializer=_start_worker, initargs=(settings, shared))
    try:
        yield pool
        pool.close()
    finally:
        pool.terminate()
        pool.join()


# --- the stage ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExamplesInputs:
    """The checked inputs of the stage."""

    ingested: Path
    tokenizer: TokenizerInfo
    documents: dict[str, int]


def check_inputs(ingested: Path, tokenizer_dir: Path, params: ExamplesParams) -> ExamplesInputs:
    """Fail early, in one line, on anything that would make the stage fail later."""
    ingested = Path(ingested)
    documents = {}
    for split in SPLITS:
        split_dir = ingested / split
        if not split_dir.is_dir():
            raise BertforgeError(f"{split_dir}: not found (run the ingest stage first)")
        documents[split] = count_rows(split_dir)
        if documents[split] == 0:
            raise BertforgeError(f"{split_dir}: no documents (add text to the corpus)")
        if params.nsp and documents[split] == 1:
            raise BertforgeError(
                f"{split_dir}: nsp needs at least two documents, found one "
                "(set examples.nsp false or add documents)"
            )
    return ExamplesInputs(ingested, inspect_tokenizer(tokenizer_dir), documents)


def dupe_factors(params: ExamplesParams) -> tuple[int, int]:
    """Passes over (train, heldout): held-out instances are for evaluation, one pass suffices."""
    return params.dupe_factor, 1


def write_examples(
    inputs: ExamplesInputs, output: Path, params: ExamplesParams, progress: bool = True
) -> dict[str, dict[str, float]]:
    """Write every split's instances and meta.json into `output`; return the metrics per split."""
    output = Path(output)
    settings = UnitSettings(params, inputs.tokenizer, dupe_factors(params), output, inputs.ingested)
    for split in SPLITS:
        (output / split).mkdir(parents=True, exist_ok=True)
    shared = multiprocessing.Array("q", 2)  # the next unit to claim, the documents done
    _start_worker(settings, shared)  # this process takes a share too; forked helpers inherit it
    progress_bar = tqdm(
        total=sum(inputs.documents.values()), desc="examples", unit="doc", disable=not progress
    )

    def show_progress() -> None:
        progress_bar.update(shared[1] - progress_bar.n)

    with (
        progress_bar,
        _lean_processes(),
        _helper_pool(settings, shared, params.num_proc - 1) as pool,
    ):
        shares = [pool.apply_async(process_share) for _ in range(params.num_proc - 1)]
        counts = [process_share(on_unit=show_progress)]
        for share in shares:
            while not share.ready():
                share.wait(0.2)
                show_progress()
            counts.append(share.get())
        show_progress()
    totals = {split: sum((share[split] for share in counts), Counter()) for split in SPLITS}
    metrics = {split: split_metrics(totals[split], params) for split in SPLITS}
    write_meta(output / "meta.json", inputs, params, metrics)
    return metrics


def split_metrics(totals: Mapping[str, float], params: ExamplesParams) -> dict[str, float]:
    """Ratios a reader can check against the params (fill, masked fraction, 80/10/10, NSP)."""
    instances = int(totals.get("instances", 0))
    tokens = int(totals.get("tokens", 0))
    masked = int(totals.get("masked", 0))
    nsp_pairs = int(totals.get("nsp_pairs", 0))

    def ratio(numerator: float, denominator: float) -> float:
        return float(numerator) / denominator if denominator else 0.0

    metrics = {
        "instances": instances,
        "tokens": tokens,
        "mean_fill_ratio": ratio(tokens, instances * params.max_seq_length),
    }
    if params.masking == "static":
        metrics |= {
            "masked_fraction": ratio(masked, tokens),
            "masked_as_mask_ratio": ratio(totals.get("masked_as_mask", 0), masked),
            "masked_kept_ratio": ratio(totals.get("masked_kept", 0), masked),
            "masked_random_ratio": ratio(totals.get("masked_random", 0), masked),
        }
    if params.nsp:
        metrics["nsp_random_next_ratio"] = ratio(totals.get("random_next", 0), nsp_pairs)
    return metrics


def write_meta(
    path: Path,
    inputs: ExamplesInputs,
    params: ExamplesParams,
    metrics: Mapping[str, Mapping[str, float]],
) -> None:
    """data/examples/meta.json: what a reader needs to interpret and check the shards."""
    meta = {
        "vocab_digest": inputs.tokenizer.digest,
        "vocab_size": inputs.tokenizer.vocab_size,
        "id_dtype": id_dtype_name(inputs.tokenizer.vocab_size),
        "special_token_ids": inputs.tokenizer.special_ids,
        "instances": {split: int(metrics[split]["instances"]) for split in metrics},
        "dupe_factor": dict(zip(SPLITS, dupe_factors(params), strict=True)),
        **{
            key: getattr(params, key)
            for key in (
                "max_seq_length",
                "masking",
                "nsp",
                "whole_word_mask",
                "max_predictions_per_seq",
                "masked_lm_prob",
                "short_seq_prob",
                "negative_pool_size",
                "random_seed",
            )
        },
    }
    Path(path).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def read_meta(examples_dir: Path) -> dict[str, Any]:
    """data/examples/meta.json, for readers of the shards (pretrain)."""
    path = Path(examples_dir) / "meta.json"
    if not path.is_file():
        raise BertforgeError(f"{path}: not found (run the examples stage first)")
    return json.loads(path.read_text(encoding="utf-8"))


# --- reading the shards (pretrain) -------------------------------------------------------------


def collate_instances(
    batch: pa.RecordBatch | pa.Table,
    pad_id: int,
    max_predictions_per_seq: int,
    dynamic_masking: tuple[MaskingRule, np.random.Generator] | None = None,
    pad_to: int | None = None,
) -> dict[str, np.ndarray]:
    """Stored instances → padded int64 model inputs, as transformers' BERT names them.

    Returns ``input_ids``, ``attention_mask``, ``token_type_ids`` ``[batch, width]`` (width: the
    longest row, or `pad_to`), ``masked_lm_positions`` ``[batch, max_predictions_per_seq]``
    (padded with 0), ``masked_lm_labels`` (the original ids there, padded with `IGNORE_INDEX`),
    ``labels`` ``[batch, width]`` (the same as a full-sequence MLM target: `IGNORE_INDEX`
    except at masked positions) and ``next_sentence_label`` ``[batch]`` (`IGNORE_INDEX` without
    NSP). With `dynamic_masking` (``masking: dynamic``) the masks are drawn here by `mask_batch`.
    """
    columns = {name: _combined(batch.column(name)) for name in batch.schema.names}
    input_ids, lengths = pad_ragged(
        columns["input_ids"].flatten().to_numpy(), _offsets(columns["input_ids"]), pad_id, pad_to
    )
    input_ids = input_ids.astype(np.int64)
    width = input_ids.shape[1]
    in_sequence = np.arange(width) < lengths[:, None]
    segment_b_start = columns["segment_b_start"].to_numpy().astype(np.int64)
    if dynamic_masking is not None:
        rule, rng = dynamic_masking
        input_ids, positions, masked_lm_labels = mask_batch(input_ids, lengths, rule, rng)
        input_ids[~in_sequence] = pad_id
    else:
        positions, _ = pad_ragged(
            columns["masked_lm_positions"].flatten().to_numpy().astype(np.int64),
            _offsets(columns["masked_lm_positions"]),
            0,
            max_predictions_per_seq,
        )
        masked_lm_labels, _ = pad_ragged(
            columns["masked_lm_ids"].flatten().to_numpy().astype(np.int64),
            _offsets(columns["masked_lm_ids"]),
            IGNORE_INDEX,
            max_predictions_per_seq,
        )
    labels = np.full(input_ids.shape, IGNORE_INDEX, dtype=np.int64)
    rows = np.broadcast_to(np.arange(len(labels))[:, None], positions.shape)
    has_label = masked_lm_labels != IGNORE_INDEX
    labels[rows[has_label], positions[has_label]] = masked_lm_labels[has_label]
    next_sentence_label = columns["next_sentence_label"].to_numpy().astype(np.int64)
    return {
        "input_ids": input_ids,
        "attention_mask": in_sequence.astype(np.int64),
        "token_type_ids": ((np.arange(width) >= segment_b_start[:, None]) & in_sequence).astype(
            np.int64
        ),
        "masked_lm_positions": positions,
        "masked_lm_labels": masked_lm_labels.astype(np.int64),
        "labels": labels,
        "next_sentence_label": np.where(next_sentence_label < 0, IGNORE_INDEX, next_sentence_label),
    }


def _combined(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _offsets(column: pa.ListArray) -> np.ndarray:
    offsets = column.offsets.to_numpy().astype(np.int64)
    return offsets - offsets[0]
