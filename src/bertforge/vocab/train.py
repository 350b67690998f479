"""WordPiece training, made deterministic.

Training streams the ingested training sentences into HF's WordPiece trainer. That trainer
numbers the first ``##c`` pieces in hash-map order, which breaks count ties differently from run
to run; `train_tokenizer` fixes the alphabet and those pieces beforehand (a first, counting pass)
so that the same corpus and params give the same bytes.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, models, trainers

from bertforge.errors import BertforgeError
from bertforge.tokenizer.pipeline import (
    CONTINUING_SUBWORD_PREFIX,
    UNK_TOKEN,
    bert_normalizer,
    bert_pre_tokenizer,
    build_tokenizer,
    is_cjk_ideograph,
    is_punctuation,
)
from bertforge.vocab.ingested import iter_sentences, require_training_documents
from bertforge.vocab.params import VocabParams


@dataclass(frozen=True)
class Alphabet:
    """The characters the trainer starts from, and those that also start ``##`` pieces."""

    characters: tuple[str, ...]
    continuations: tuple[str, ...]


def count_alphabet(
    normalized_texts: Iterable[str], limit: int, tokenize_chinese_chars: bool, coverage: float = 1.0
) -> Alphabet:
    """The `limit` most frequent characters of the training words (ties: lowest code point),
    and past them as many more, by frequency, as it takes to make up `coverage` of all the
    character occurrences (a script with thousands of characters, such as Chinese, needs far
    more than an alphabet suits English; where `limit` already covers as much, it is the same).

    HF's trainer would pick the same characters but break frequency ties, and number the
    ``##c`` pieces, in hash-map order; fixing both here makes training deterministic. It reads
    normalized text, where the pre-tokenizer only drops spaces and cuts around punctuation and
    CJK ideographs: a character continues a word exactly when it follows a character that is
    none of those, and is none itself. (Far faster than pre-tokenizing in Python.)
    """
    frequencies: Counter[str] = Counter()
    neighbours: set[tuple[str, str]] = set()
    for text in normalized_texts:
        frequencies.update(text)
        neighbours.update(itertools.pairwise(text))
    frequencies.pop(" ", None)

    def inside_words(char: str) -> bool:
        isolated = is_punctuation(char) or (tokenize_chinese_chars and is_cjk_ideograph(char))
        return char != " " and not isolated

    continuing = {after for before, after in neighbours if inside_words(before)}
    ranked = sorted(frequencies, key=lambda char: (-frequencies[char], char))
    kept = sorted(ranked[: max(limit, covering_count(ranked, frequencies, coverage))])
    return Alphabet(
        tuple(kept), tuple(char for char in kept if char in continuing and inside_words(char))
    )


def covering_count(ranked: list[str], frequencies: Counter[str], coverage: float) -> int:
    """How many of the `ranked` characters (most frequent first) make up `coverage` of all
    the occurrences."""
    needed = coverage * sum(frequencies.values())
    covered = 0
    for count, char in enumerate(ranked, start=1):
        covered += frequencies[char]
        if covered >= needed:
            return count
    return len(ranked)


def train_tokenizer(train_dir: Path, params: VocabParams) -> Tokenizer:
    """Train a WordPiece vocabulary on the ingested training sentences; deterministic.

    Two streaming passes: one counts the alphabet (`count_alphabet`: `limit_alphabet`
    characters or more, to cover `alphabet_coverage`), one feeds HF's trainer. The vocabulary
    lists the special tokens first (in params order), then the fixed ``##c`` pieces, the
    alphabet and the learned pieces.
    """
    train_dir = Path(train_dir)
    require_training_documents(train_dir)
    normalizer = bert_normalizer(params.lowercase, params.strips_accents)
    normalized = map(normalizer.normalize_str, iter_sentences(train_dir, "vocab: alphabet"))
    alphabet = count_alphabet(
        normalized, params.limit_alphabet, params.tokenize_chinese_chars, params.alphabet_coverage
    )
    if not alphabet.characters:
        raise BertforgeError(f"{train_dir}: the training documents contain no words to learn from")
    smallest = len(params.special_tokens) + len(alphabet.characters)
    # the alphabet coverage asks for more single characters than the vocabulary has room for
    if params.vocab_size <= smallest:
        raise BertforgeError(
            f"params.yaml: vocab.vocab_size {params.vocab_size} leaves no room for pieces: the "
            f"alphabet that covers vocab.alphabet_coverage {params.alphabet_coverage} of "
            f"{train_dir} has {len(alphabet.characters)} characters (raise vocab.vocab_size "
            f"above {smallest} or lower vocab.alphabet_coverage)"
        )
    fixed_pieces = [CONTINUING_SUBWORD_PREFIX + char for char in alphabet.continuations]
    trainer = trainers.WordPieceTrainer(
        vocab_size=params.vocab_size,
        min_frequency=params.min_frequency,
        limit_alphabet=len(alphabet.characters),
        initial_alphabet=list(alphabet.characters),
        special_tokens=[*params.special_tokens, *fixed_pieces],
        continuing_subword_prefix=CONTINUING_SUBWORD_PREFIX,
        show_progress=False,
    )
    scratch = Tokenizer(models.WordPiece(unk_token=UNK_TOKEN))
    scratch.normalizer = normalizer
    scratch.pre_tokenizer = bert_pre_tokenizer(params.tokenize_chinese_chars)
    scratch.train_from_iterator(iter_sentences(train_dir, "vocab: train"), trainer=trainer)
    # The ##c pieces went in as special tokens only to fix their ids: rebuild without that.
    return build_tokenizer(scratch.get_vocab(with_added_tokens=False), params)
