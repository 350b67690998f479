"""Vocabulary extension (``vocab.extend_with: N``): domain WordPieces after the parent's ids.

The recipe, one step per function:

1. `train_tokenizer` learns a domain WordPiece vocabulary of ``vocab.vocab_size`` pieces on the
   ingested training sentences, with the parent's normalisation;
2. `count_new_pieces` tokenizes the training sentences with it and counts each piece the parent
   vocabulary lacks (``##`` continuations included): each occurrence is a place where the
   parent had to split that string into smaller pieces;
3. `choose_pieces` keeps the N most frequent ones seen at least ``min_frequency`` times (ties:
   by string), appended after the parent's ids so that every parent id keeps its meaning;
4. `parent_pieces` records, for each new piece, the parent pieces that spelled it (the original
   BERT's greedy longest-match-first): pretrain starts the new embedding row, and the MLM bias,
   from their mean.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from bertforge.errors import BertforgeError
from bertforge.io import read_json, write_json_atomic
from bertforge.tokenizer.pipeline import CONTINUING_SUBWORD_PREFIX, UNK_TOKEN
from bertforge.vocab.ingested import iter_sentences
from bertforge.vocab.metrics import batched
from bertforge.vocab.params import VocabParams
from bertforge.vocab.train import train_tokenizer

EXTENSION_FILE = "vocab_extension.json"


@dataclass(frozen=True)
class AddedPiece:
    """One new vocabulary entry: its id, string, corpus count and the parent ids that spelled it."""

    id: int
    token: str
    count: int
    parent_pieces: tuple[int, ...]


@dataclass(frozen=True)
class VocabExtension:
    """What the vocab stage appended to a parent vocabulary (vocab_extension.json)."""

    parent_vocab_size: int
    added: tuple[AddedPiece, ...]

    def write(self, directory: Path) -> None:
        write_json_atomic(
            Path(directory) / EXTENSION_FILE,
            {
                "parent_vocab_size": self.parent_vocab_size,
                "added": [
                    {
                        "id": piece.id,
                        "token": piece.token,
                        "count": piece.count,
                        "parent_pieces": list(piece.parent_pieces),
                    }
                    for piece in self.added
                ],
            },
        )

    @classmethod
    def read(cls, directory: Path) -> VocabExtension | None:
        """The extension recorded in a tokenizer directory, or None when it has none."""
        path = Path(directory) / EXTENSION_FILE
        if not path.is_file():
            return None
        payload = read_json(path, "vocab")
        try:
            added = tuple(
                AddedPiece(
                    int(piece["id"]),
                    str(piece["token"]),
                    int(piece["count"]),
                    tuple(int(i) for i in piece["parent_pieces"]),
                )
                for piece in payload["added"]
            )
            return cls(int(payload["parent_vocab_size"]), added)
        except (KeyError, TypeError, ValueError) as error:
            raise BertforgeError(f"{path}: malformed ({type(error).__name__}: {error})") from None


def extend_vocabulary(
    parent_tokens: list[str], train_dir: Path, params: VocabParams
) -> tuple[list[str], VocabExtension]:
    """The parent's tokens followed by up to `extend_with` domain pieces, and their record."""
    domain = train_tokenizer(train_dir, params)
    known = set(parent_tokens)
    domain_vocab = domain.get_vocab(with_added_tokens=False)
    candidates = {index: token for token, index in domain_vocab.items() if token not in known}
    counts = count_new_pieces(domain, candidates, train_dir)
    chosen = choose_pieces(counts, params.min_frequency, params.extend_with, params.vocab_size)
    parent_ids = {token: index for index, token in enumerate(parent_tokens)}
    added = tuple(
        AddedPiece(len(parent_tokens) + rank, token, count, parent_pieces(token, parent_ids))
        for rank, (token, count) in enumerate(chosen)
    )
    return [*parent_tokens, *(piece.token for piece in added)], VocabExtension(
        len(parent_tokens), added
    )


def count_new_pieces(
    domain: Tokenizer, candidates: dict[int, str], train_dir: Path, batch_size: int = 1024
) -> Counter[str]:
    """How often each candidate piece occurs in the training sentences under the domain
    tokenizer: the places where the parent vocabulary splits that string."""
    size = max(candidates, default=-1) + 1
    totals = np.zeros(size, dtype=np.int64)
    sentences = iter_sentences(train_dir, "vocab: extension counts")
    for batch in batched(sentences, batch_size):
        for encoding in domain.encode_batch(batch, add_special_tokens=False):
            ids = np.asarray(encoding.ids, dtype=np.int64)
            totals += np.bincount(ids[ids < size], minlength=size)
    return Counter({token: int(totals[index]) for index, token in candidates.items()})


def choose_pieces(
    counts: Counter[str], min_frequency: int, extend_with: int, vocab_size: int
) -> list[tuple[str, int]]:
    """The `extend_with` most frequent pieces (count ≥ min_frequency; ties: by string)."""
    # most frequent first; equal counts in string order, so the choice is deterministic
    eligible = sorted(
        ((token, count) for token, count in counts.items() if count >= min_frequency),
        key=lambda item: (-item[1], item[0]),
    )
    if len(eligible) < extend_with:
        raise BertforgeError(
            f"params.yaml: vocab.extend_with is {extend_with}, but the corpus offers only "
            f"{len(eligible)} new WordPieces (pieces of a {vocab_size}-piece domain vocabulary "
            f"that the parent lacks, seen at least min_frequency={min_frequency} times); lower "
            f"vocab.extend_with to at most {len(eligible)}"
        )
    return eligible[:extend_with]


def parent_pieces(token: str, parent_ids: dict[str, int]) -> tuple[int, ...]:
    """The parent ids that spell `token` (greedy longest-match-first, as BERT tokenizes a word);
    a string the parent cannot spell is its [UNK]."""
    continuation = token.startswith(CONTINUING_SUBWORD_PREFIX)
    text = token[len(CONTINUING_SUBWORD_PREFIX) :] if continuation else token
    pieces: list[int] = []
    start = 0
    while start < len(text):
        # the longest vocabulary piece at `start` ("##"-prefixed inside a word)
        for end in range(len(text), start, -1):
            prefix = CONTINUING_SUBWORD_PREFIX if (start > 0 or continuation) else ""
            index = parent_ids.get(prefix + text[start:end])
            if index is not None:
                pieces.append(index)
                start = end
                break
        else:
            return (parent_ids[UNK_TOKEN],)
    return tuple(pieces)
