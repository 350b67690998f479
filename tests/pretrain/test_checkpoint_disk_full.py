"""A disk that fills up while a checkpoint is saved: one line saying the disk is full (torch
reports only a short write), and the previous checkpoint stays the one `latest` names."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertforge.errors import BertforgeError
from bertforge.pretrain.checkpoint import CheckpointStore
from tests.pretrain.test_checkpoint_safe_load import trained_engine
from tests.robustness.support import fill_up, full_disk


def test_a_full_disk_while_saving_a_checkpoint_says_so_and_keeps_the_last_good_one(
    single_process_job, project: Path, tmp_path: Path
):
    store = CheckpointStore(tmp_path / "checkpoints")
    engine, _ = trained_engine(project, single_process_job.device, 2, "fp32", seed=0)
    with full_disk(store.directory, size="2m"):
        store.save(engine, 1, {"step": 1}, single_process_job, keep=2)
        fill_up(store.directory)
        with pytest.raises(BertforgeError) as raised:
            store.save(engine, 2, {"step": 2}, single_process_job, keep=2)
        assert str(raised.value).startswith(
            f"disk full (no space left on device) while saving checkpoint "
            f"{store.directory / store.tag(2)}; the last good checkpoint is "
            f"{store.directory / store.tag(1)}"
        ), str(raised.value)
        assert store.latest_tag() == store.tag(1)
