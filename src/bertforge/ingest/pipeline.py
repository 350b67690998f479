"""The ingest stage from sources to shards: raw text → cleaned, sentence-split, deduplicated
documents, split train/held-out, written as Parquet shards with their metrics.

The steps, in the order a document meets them (docs/ingest.md tells each in full):

1. Read: `readers.read_documents` streams the documents of every source in order, one bounded
   piece at a time (main process).
2. Clean: `cleaning.clean_document` removes control and format characters, normalizes to NFC
   and collapses whitespace.
3. Filter: drop documents empty once cleaned or shorter than `min_document_chars`.
4. Split into sentences (`sentences.make_sentence_splitter`: sentencex); drop documents with
   fewer than `min_sentences`. Steps 2–4 are `documents.process_batch`.
5. Deduplicate: the first occurrence, in source order, of each cleaned text wins
   (`dedup.drop_duplicates`, main process).
6. Hold out a document iff a salted hash of its id falls below `holdout_fraction`
   (`documents.is_held_out`).

Steps 2–4 and 6 run in `num_proc` worker processes on batches of documents; results come back in
order, so the output is byte-identical for any `num_proc`. Nothing holds the corpus in memory.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bertforge.constants import EXAMPLE_SPLITS
from bertforge.errors import BertforgeError
from bertforge.ingest.dedup import SeenDigests, drop_duplicates
from bertforge.ingest.documents import (
    CleanedDocument,
    DocumentRules,
    batch_documents,
    process_batch,
)
from bertforge.ingest.metrics import IngestCounts, ingest_metrics
from bertforge.ingest.params import IngestParams
from bertforge.ingest.readers import ReadProgress, read_documents
from bertforge.ingest.sources import Source
from bertforge.parallel import ordered_parallel_map

ROW_GROUP_DOCUMENTS = 1000
"""Documents per Parquet row group of data/ingested: a reader can decode a range of documents
(the examples stage's work units, 1,000 documents by default) without their neighbours."""


def ingest(
    params: IngestParams,
    sources: Sequence[Source],
    output_dir: Path,
    *,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Write `output_dir`/train and `output_dir`/heldout Parquet shards; return the metrics.

    `output_dir` is a staging directory (see `bertforge.io.atomic_directory`): on any error the
    caller discards it, so a failed run never replaces previous output.
    """
    # imported here: the spawned workers import the stage script, and with it this module;
    # pyarrow, pandas and pandera would cost each of them ~1 s of CPU and ~90 MB for nothing
    from bertforge.schemas import DOCUMENT_ARROW_SCHEMA, DOCUMENTS, validate
    from bertforge.shards import ShardWriter

    output_dir = Path(output_dir)
    writers = {
        side: ShardWriter(
            output_dir / side,
            DOCUMENT_ARROW_SCHEMA,
            params.rows_per_shard,
            validate=functools.partial(validate, DOCUMENTS, where=str(output_dir / side)),
            parquet_options={"row_group_size": ROW_GROUP_DOCUMENTS},
        )
        for side in EXAMPLE_SPLITS
    }
    progress, counts, seen = ReadProgress(), IngestCounts(), SeenDigests()
    batches = batch_documents(read_documents(sources, params.max_document_chars, progress))
    results = ordered_parallel_map(
        process_batch,
        batches,
        params.num_proc,
        DocumentRules.from_params(params),
        param="ingest.num_proc",
    )
    local_files = [source.path for source in sources if source.path is not None]
    total_bytes = sum(path.stat().st_size for path in local_files)
    with tqdm(
        total=total_bytes if len(local_files) == len(sources) else None,
        unit="B",
        unit_scale=True,
        desc="ingest",
        disable=not show_progress,
    ) as bar:
        for result in results:
            kept = drop_duplicates(result.documents, seen)
            counts.add_batch(result, kept)
            writers["train"].write_rows(document_rows(kept, held_out=False))
            writers["heldout"].write_rows(document_rows(kept, held_out=True))
            bar.update(progress.input_bytes - bar.n)
    check_enough_documents(counts, sources, progress)
    for writer in writers.values():
        writer.close()
    shards = {side: writer.shards_written for side, writer in writers.items()}
    return ingest_metrics(counts, progress, shards)


def document_rows(documents: list[CleanedDocument], held_out: bool) -> list[dict[str, Any]]:
    """Rows of the DOCUMENTS contract for the documents on one side of the split."""
    return [
        {"doc_id": document.doc_id, "source": document.source, "sentences": document.sentences}
        for document in documents
        if document.held_out == held_out
    ]


def check_enough_documents(
    counts: IngestCounts, sources: Sequence[Source], progress: ReadProgress
) -> None:
    """An empty corpus, or one whose every document was held out, is an error naming it."""
    names = ", ".join(source.name for source in sources[:3]) + (" …" if len(sources) > 3 else "")
    if counts.train + counts.heldout == 0:
        raise BertforgeError(
            f"{names}: no documents left after cleaning (read {progress.raw_documents} "
            f"documents; dropped {counts.dropped})"
        )
    if counts.train == 0:
        raise BertforgeError(
            f"{names}: all {counts.heldout} documents were held out; "
            "add documents or lower holdout_fraction"
        )
