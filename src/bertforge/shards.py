"""Parquet shards: how every stage writes and reads its row data.

A split is a directory of ``part-00000.parquet``, ``part-00001.parquet``, … written in order, each
holding at most `rows_per_shard` rows (`ShardWriter`), or one shard per work unit written by
whichever process made it (`write_shard`). Every shard is validated against its pandera contract
before it is written, inside the stage's staging directory, so a reader can trust what it reads.
Files are written with fixed settings (no statistics timestamps, zstd level 3 unless a stage
chooses others), so the same rows give the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SHARD_GLOB = "part-*.parquet"
PARQUET_OPTIONS = {"compression": "zstd", "compression_level": 3, "write_statistics": False}
"""How shards are written unless a stage says otherwise (`ShardWriter`'s `parquet_options`)."""


class ShardWriter:
    """Append rows (dicts) or Arrow tables; writes a validated shard every `rows_per_shard` rows.

    `validate` gets each shard as a pandas frame; `parquet_options` (keyword arguments of
    `pyarrow.parquet.write_table`) override `PARQUET_OPTIONS`.

    A shard's bytes depend only on its rows, not on how they were appended.
    """

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        rows_per_shard: int,
        validate: Callable[[pd.DataFrame], None] | None = None,
        parquet_options: dict | None = None,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.schema = schema
        self.rows_per_shard = rows_per_shard
        self.validate = validate
        self.parquet_options = parquet_options
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self.shards_written = 0
        self.rows_written = 0

    def write_rows(self, rows: list[dict]) -> None:
        self.write_table(pa.Table.from_pylist(rows, schema=self.schema))

    def write_table(self, table: pa.Table) -> None:
        """Append the rows of `table` (columns as the writer's schema)."""
        if table.schema != self.schema:
            table = table.cast(self.schema)
        self._pending.append(table)
        self._pending_rows += len(table)
        while self._pending_rows >= self.rows_per_shard:
            pending = pa.concat_tables(self._pending)
            self._flush(pending.slice(0, self.rows_per_shard))
            rest = pending.slice(self.rows_per_shard)
            self._pending, self._pending_rows = [rest], len(rest)

    def close(self) -> None:
        """Write what is left; a split with no rows still gets one empty, valid shard."""
        if self._pending_rows or self.shards_written == 0:
            self._flush(pa.concat_tables(self._pending or [self.schema.empty_table()]))
        self._pending, self._pending_rows = [], 0

    def _flush(self, table: pa.Table) -> None:
        path = self.directory / f"part-{self.shards_written:05d}.parquet"
        write_shard(table, path, self.validate, parquet_options=self.parquet_options)
        self.shards_written += 1
        self.rows_written += len(table)


def write_shard(
    table: pa.Table,
    path: Path,
    validate: Callable[[pd.DataFrame], None] | None = None,
    arrow_lists: bool = False,
    parquet_options: dict | None = None,
) -> None:
    """Validate `table`, then write it as one shard at `path`.

    `validate` gets the shard as a pandas frame; with `arrow_lists` its list columns are
    Arrow-backed (`pd.ArrowDtype`) instead of one numpy array per row, which is much cheaper
    for rules that read them flattened. `parquet_options` override `PARQUET_OPTIONS`.
    """
    table = table.combine_chunks()
    if validate is not None:
        validate(table.to_pandas(types_mapper=_arrow_lists if arrow_lists else None))
    pq.write_table(table, path, **(PARQUET_OPTIONS | (parquet_options or {})))


def _arrow_lists(arrow_type: pa.DataType) -> pd.ArrowDtype | None:
    """List columns stay Arrow-backed in the frame handed to `validate` (no array per row)."""
    return pd.ArrowDtype(arrow_type) if pa.types.is_list(arrow_type) else None


def shard_files(directory: Path) -> list[Path]:
    """The shards of a split, in order."""
    return sorted(Path(directory).glob(SHARD_GLOB))


def count_rows(directory: Path) -> int:
    return sum(pq.ParquetFile(path).metadata.num_rows for path in shard_files(directory))


def iter_batches(
    directory: Path, columns: list[str] | None = None, batch_size: int = 1024
) -> Iterator[pa.RecordBatch]:
    """Stream a split's rows in order, a record batch at a time (bounded memory)."""
    for path in shard_files(directory):
        yield from pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns)
