"""What happens to one document, in the worker processes: clean, filter, split, id, side.

`process_batch` turns a batch of raw documents into the kept documents (in order) and the counts
of those dropped. Every step depends on the document alone, which is why the output does not
change with `num_proc` or the batching.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from bertforge.ingest.cleaning import clean_document
from bertforge.ingest.params import IngestParams
from bertforge.ingest.readers import RawDocument
from bertforge.ingest.sentences import SENTENCE_SPLITTER, make_sentence_splitter, splitter_for
from bertforge.ingest.zh import join_wrapped_lines

DROP_REASONS = ("empty", "too_short", "too_few_sentences", "duplicate")

# A batch sent to a worker holds at most this many documents or characters (bounded memory).
BATCH_DOCUMENTS = 512
BATCH_CHARACTERS = 4_000_000


def document_id(cleaned_text: str) -> str:
    """First 16 hex digits of the sha256 of the cleaned text: the dedup and split key."""
    # the id is the text's hash: equal cleaned texts are duplicates
    return hashlib.sha256(cleaned_text.encode("utf-8")).hexdigest()[:16]


def is_held_out(doc_id: str, seed: int, holdout_fraction: float) -> bool:
    """Whether a document goes to the held-out split: a salted hash of its id, not a random draw.

    Depends on the document alone, so the split does not change with order, batching or num_proc,
    and a document keeps its side when others are added.
    """
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    # held out iff the first 8 bytes of sha256(f"{seed}:{doc_id}") / 2**64 < holdout_fraction
    return int.from_bytes(digest[:8], "big") / 2**64 < holdout_fraction


@dataclass(frozen=True)
class DocumentRules:
    """What a worker needs to turn a raw document into a kept document or a drop reason."""

    min_document_chars: int
    min_sentences: int
    language: str
    holdout_fraction: float
    seed: int
    splitter: str = SENTENCE_SPLITTER
    join_wrapped_lines: bool = False

    @classmethod
    def from_params(cls, params: IngestParams) -> DocumentRules:
        return cls(
            min_document_chars=params.min_document_chars,
            min_sentences=params.min_sentences,
            language=params.language,
            holdout_fraction=params.holdout_fraction,
            seed=params.seed,
            splitter=splitter_for(params.language),
            join_wrapped_lines=params.join_wrapped_lines,
        )


class CleanedDocument(NamedTuple):
    doc_id: str
    source: str
    sentences: list[str]
    held_out: bool
    characters: int


@dataclass
class BatchResult:
    documents: list[CleanedDocument]
    dropped: dict[str, int]
    characters_removed: int


def process_batch(batch: list[RawDocument], rules: DocumentRules) -> BatchResult:
    """Clean, filter, split and assign a side to each document of a batch, in order."""
    split_sentences = make_sentence_splitter(rules.splitter, rules.language)
    documents: list[CleanedDocument] = []
    dropped = dict.fromkeys(DROP_REASONS, 0)
    characters_removed = 0
    for source, raw_text in batch:
        # hard-wrapped lines of Chinese or Japanese are joined without a space
        if rules.join_wrapped_lines:
            raw_text = join_wrapped_lines(raw_text)
        text, removed = clean_document(raw_text)
        characters_removed += removed
        # drop a document that is empty once cleaned
        if not text:
            dropped["empty"] += 1
            continue
        # drop a document shorter than min_document_chars
        if len(text) < rules.min_document_chars:
            dropped["too_short"] += 1
            continue
        sentences = split_sentences(text)
        # drop a document with fewer than min_sentences sentences
        if len(sentences) < rules.min_sentences:
            dropped["too_few_sentences"] += 1
            continue
        doc_id = document_id(text)
        held_out = is_held_out(doc_id, rules.seed, rules.holdout_fraction)
        documents.append(CleanedDocument(doc_id, source, sentences, held_out, len(text)))
    return BatchResult(documents, dropped, characters_removed)


def batch_documents(documents: Iterable[RawDocument]) -> Iterator[list[RawDocument]]:
    """Consecutive batches of at most BATCH_DOCUMENTS documents or BATCH_CHARACTERS characters."""
    batch: list[RawDocument] = []
    characters = 0
    for document in documents:
        batch.append(document)
        characters += len(document.text)
        if len(batch) >= BATCH_DOCUMENTS or characters >= BATCH_CHARACTERS:
            yield batch
            batch, characters = [], 0
    if batch:
        yield batch
