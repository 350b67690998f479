"""Work units: a split's documents cut, in order, into fixed groups that are made independently.

A unit is `negative_pool_size` consecutive documents of one split (`unit_ranges`). It is read
by index (`SplitDocuments`), tokenized into one flat array (`tokenize_unit`) and made into
instances with its own generator (`unit_generator`, seeded from ``(random_seed, split, unit)``):
so the bytes depend on neither the number of processes nor which process makes which unit, and
memory is bounded by a unit per process whatever the size of the corpus. The unit is also the
pool NSP negatives are drawn from; the original draws from the whole corpus, held in memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bertforge.errors import BertforgeError
from bertforge.examples.instances import (
    InstanceBatch,
    TokenizedUnit,
    assemble_instances,
    create_instances_from_documents,
)
from bertforge.examples.masking import MaskingRule, mask_instances
from bertforge.examples.params import ExamplesParams
from bertforge.examples.segmentation import SegmentedSentenceTokenizer, instance_word_continues
from bertforge.shards import shard_files
from bertforge.tokenizer.sentences import SentenceTokenizer


@dataclass(frozen=True)
class WorkUnit:
    """Documents `first_document` … of one split (their sentences), with their own generator."""

    split_index: int
    unit_index: int
    first_document: int
    documents: pa.ListArray


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


def tokenize_unit(
    tokenizer: SentenceTokenizer | SegmentedSentenceTokenizer, documents: pa.ListArray
) -> TokenizedUnit:
    """Tokenize every sentence of the unit's documents, without special tokens, into one array
    (with a segmenting tokenizer, also each token's word-continuation mark)."""
    word_continues = None
    if isinstance(tokenizer, SegmentedSentenceTokenizer):
        token_ids, lengths, word_continues = tokenizer.encode(documents.flatten())
    else:
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
        word_continues=word_continues,
    )


def unit_generator(random_seed: int, split_index: int, unit_index: int) -> np.random.Generator:
    """The generator of one unit: independent of every other unit and of the worker running it."""
    return np.random.default_rng(np.random.SeedSequence([random_seed, split_index, unit_index]))


def create_unit_instances(
    unit: TokenizedUnit,
    params: ExamplesParams,
    special_ids: Mapping[str, int],
    rule: MaskingRule,
    passes: int,
    rng: np.random.Generator,
    where: str = "",
) -> InstanceBatch:
    """`passes` passes over the unit's documents, shuffled, then masked (static masking)."""
    if params.nsp and unit.num_documents < 2:
        raise BertforgeError(
            f"{where}: nsp needs at least two documents with tokens per unit, found "
            f"{unit.num_documents} (set examples.nsp false or add documents)"
        )
    rows = create_instances_from_documents(unit, params, passes, rng)
    span_rows = rows[rng.permutation(len(rows)), :5]  # the instances in a random order
    instances = assemble_instances(
        unit.token_ids, span_rows, special_ids["[CLS]"], special_ids["[SEP]"]
    )
    if params.masking == "static":
        word_continues = None
        if unit.word_continues is not None:
            word_continues = instance_word_continues(
                unit.word_continues, span_rows, instances.input_offsets
            )
        mask_instances(instances, rule, rng, word_continues)
    return instances
