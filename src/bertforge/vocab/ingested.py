"""The ingested splits the vocab stage reads: checked up front, streamed a batch at a time."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from bertforge.errors import BertforgeError
from bertforge.shards import count_rows, iter_batches


def require_split(directory: Path, split: str) -> int:
    """The number of documents in an ingested split; a missing split is a one-line error."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BertforgeError(f"{directory}: {split} documents not found (run `dvc repro ingest`)")
    return count_rows(directory)


def require_training_documents(train_dir: Path) -> None:
    if require_split(train_dir, "training") == 0:
        raise BertforgeError(
            f"{train_dir}: no training documents (check the ingest sources and filters)"
        )


def check_ingested(train_dir: Path, heldout_dir: Path) -> None:
    """Fail early, in one line, when ingest has not run or left nothing to train on."""
    require_training_documents(train_dir)
    require_split(heldout_dir, "held-out")


def iter_sentences(directory: Path, description: str) -> Iterator[str]:
    """Stream the sentences of an ingested split, a record batch at a time, with a progress bar."""
    total = count_rows(directory)
    with tqdm(total=total, desc=description, unit="doc", file=sys.stderr) as progress:
        for batch in iter_batches(directory, columns=["sentences"]):
            documents = batch.column("sentences").to_pylist()
            for sentences in documents:
                yield from sentences
            progress.update(len(documents))
