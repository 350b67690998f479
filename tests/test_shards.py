"""ShardWriter: shard boundaries, and bytes that do not depend on how rows were appended."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from bertforge.io import hash_path
from bertforge.shards import ShardWriter, count_rows, shard_files

SCHEMA = pa.schema([("ids", pa.list_(pa.uint16())), ("label", pa.int8())])
ROWS = [{"ids": list(range(i % 7)), "label": i % 2} for i in range(23)]


def test_shards_hold_rows_per_shard_rows_in_order_and_the_same_bytes_however_appended(tmp_path):
    by_rows = ShardWriter(tmp_path / "rows", SCHEMA, rows_per_shard=10)
    for start in range(0, len(ROWS), 3):
        by_rows.write_rows(ROWS[start : start + 3])
    by_rows.close()
    by_tables = ShardWriter(tmp_path / "tables", SCHEMA, rows_per_shard=10)
    for start in (0, 1, 12, 20):
        end = {0: 1, 1: 12, 12: 20, 20: 23}[start]
        by_tables.write_table(pa.Table.from_pylist(ROWS[start:end], schema=SCHEMA))
    by_tables.close()
    assert [pq.ParquetFile(p).metadata.num_rows for p in shard_files(tmp_path / "rows")] == [
        10,
        10,
        3,
    ]
    assert hash_path(tmp_path / "rows") == hash_path(tmp_path / "tables")
    read = pa.concat_tables([pq.read_table(p) for p in shard_files(tmp_path / "tables")])
    assert read.to_pylist() == ROWS
    assert by_tables.rows_written == count_rows(tmp_path / "tables") == 23


def test_an_empty_split_still_gets_one_valid_empty_shard(tmp_path):
    seen = []
    writer = ShardWriter(tmp_path / "empty", SCHEMA, 10, validate=lambda frame: seen.append(frame))
    writer.close()
    assert len(shard_files(tmp_path / "empty")) == 1 and count_rows(tmp_path / "empty") == 0
    assert len(seen) == 1 and seen[0].empty
