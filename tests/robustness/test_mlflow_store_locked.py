"""The MLflow sqlite store held locked by another writer: a stage waits MLflow's busy timeout
(20 s), then stops with one line naming the store, instead of waiting forever or a traceback."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from bertforge.errors import BertforgeError
from bertforge.tracking import stage_run

pytestmark = pytest.mark.slow  # waits out MLflow's 20 s busy timeout


def test_a_store_locked_by_another_writer_is_one_line_after_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, isolated_mlflow: Path
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("a: 1\n")
    holder = sqlite3.connect(isolated_mlflow, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of a long write
    started = time.monotonic()
    try:
        with pytest.raises(BertforgeError) as raised, stage_run("locked", {"x": 1}):
            pass
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert time.monotonic() - started < 120  # bounded: MLflow's busy timeout, not forever
    assert str(raised.value) == (
        f"sqlite:///{isolated_mlflow}: the MLflow store stayed locked by another process for "
        "MLflow's busy timeout (20 s); run the stages one at a time or use an MLflow server"
    )
