"""A stage's output folder and its metrics are swapped together, last: whatever fails, the
previous pair stays in place, and no staging or retired copy is left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bertforge.errors import BertforgeError
from bertforge.io import atomic_outputs, swap_together
from tests.robustness.support import dead_pid, fill_up, full_disk, shared_temp_dir


def previous_pair(root: Path) -> tuple[Path, Path]:
    output, metrics = root / "data" / "out", root / "metrics" / "out.json"
    (output / "part").mkdir(parents=True)
    (output / "part" / "a.txt").write_text("previous")
    metrics.parent.mkdir()
    metrics.write_text('{"run": "previous"}')
    return output, metrics


def listing(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*"))


def test_a_successful_run_swaps_output_and_metrics_together(tmp_path):
    output, metrics = previous_pair(tmp_path)
    with atomic_outputs(output, metrics) as staged:
        (staged.directory / "b.txt").write_text("new")
        staged.metrics = {"run": "new"}
    assert (output / "b.txt").read_text() == "new" and not (output / "part").exists()
    assert json.loads(metrics.read_text()) == {"run": "new"}
    assert listing(tmp_path) == [
        "data",
        "data/out",
        "data/out/b.txt",
        "metrics",
        "metrics/out.json",
    ]


def test_a_failure_inside_the_stage_keeps_the_previous_pair_and_no_debris(tmp_path):
    output, metrics = previous_pair(tmp_path)
    before = listing(tmp_path)
    with pytest.raises(RuntimeError), atomic_outputs(output, metrics) as staged:
        (staged.directory / "half.txt").write_text("half-written")
        raise RuntimeError("the stage failed")
    assert listing(tmp_path) == before
    assert (output / "part" / "a.txt").read_text() == "previous"


def test_a_failed_second_rename_puts_the_first_back(tmp_path):
    output, metrics = previous_pair(tmp_path)
    new_output = tmp_path / "data" / ".out.tmp-1"
    new_output.mkdir()
    (new_output / "b.txt").write_text("new")
    missing_metrics = tmp_path / "metrics" / ".out.json.tmp-1"  # the second rename will fail
    with pytest.raises(BertforgeError, match="cannot be replaced"):
        swap_together([(new_output, output), (missing_metrics, metrics)])
    assert (output / "part" / "a.txt").read_text() == "previous"
    assert (new_output / "b.txt").read_text() == "new"  # back in staging, for the caller to drop
    assert metrics.read_text() == '{"run": "previous"}'
    assert not list((tmp_path / "data").glob(".out.old-*"))


def test_staging_left_by_a_dead_run_is_cleaned_and_a_live_runs_is_not(tmp_path):
    output, metrics = previous_pair(tmp_path)
    dead, alive = dead_pid(), os.getppid()
    for name in (f".out.tmp-{dead}", f".out.old-{dead}", f".out.tmp-{alive}"):
        (tmp_path / "data" / name).mkdir()
    (tmp_path / "metrics" / f".out.json.tmp-{dead}").write_text("{}")
    with atomic_outputs(output, metrics) as staged:
        staged.metrics = {}
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [f".out.tmp-{alive}", "out"]
    assert sorted(p.name for p in (tmp_path / "metrics").iterdir()) == ["out.json"]


def test_a_run_killed_between_its_renames_gets_its_previous_output_back(tmp_path):
    output, metrics = previous_pair(tmp_path)
    retired = tmp_path / "data" / f".out.old-{dead_pid()}"
    output.rename(retired)  # killed after retiring the previous output, before the new one
    with pytest.raises(RuntimeError), atomic_outputs(output, metrics):
        raise RuntimeError("this run fails too")
    assert (output / "part" / "a.txt").read_text() == "previous"
    assert not retired.exists()


def give_to_nobody(root: Path) -> None:
    if os.geteuid() == 0:
        for path in [root, *root.rglob("*")]:
            os.chown(path, 65534, 65534)


def test_read_only_previous_output_or_metrics_folder_leave_the_pair_in_place():
    """As an unprivileged user: a previous output with a read-only folder inside it, then a
    read-only metrics folder. Both are one-line errors and nothing changes."""
    with shared_temp_dir() as root:
        output, metrics = previous_pair(root)
        give_to_nobody(root)
        (output / "part").chmod(0o555)
        before = listing(root)
        as_root = os.geteuid() == 0
        if as_root:
            os.setegid(65534)
            os.seteuid(65534)
        try:
            with pytest.raises(BertforgeError) as raised, atomic_outputs(output, metrics) as staged:
                (staged.directory / "b.txt").write_text("new")
                staged.metrics = {"run": "new"}
            assert str(raised.value).startswith(f"{output / 'part'}: folder is not writable")
            assert listing(root) == before
            (output / "part").chmod(0o755)
            metrics.parent.chmod(0o555)
            with pytest.raises(BertforgeError) as raised, atomic_outputs(output, metrics) as staged:
                staged.metrics = {}
            assert str(raised.value) == (
                f"{metrics.parent}: folder is not writable, cannot write {metrics}"
            )
            assert listing(root) == before
            metrics.parent.chmod(0o755)
        finally:
            if as_root:
                os.seteuid(0)
                os.setegid(0)


def test_a_full_disk_is_one_line_and_keeps_the_previous_pair(tmp_path):
    data = tmp_path / "data"
    with full_disk(data, size="64k"):
        output, metrics = previous_pair(tmp_path)
        fill_up(data)
        before = listing(tmp_path)
        with pytest.raises(BertforgeError) as raised, atomic_outputs(output, metrics) as staged:
            (staged.directory / "big.bin").write_bytes(b"x" * (1 << 20))
            staged.metrics = {}
        assert str(raised.value) == f"disk full (no space left on device) while writing {output}"
        assert listing(tmp_path) == before


def test_a_full_disk_is_named_even_when_the_writer_does_not_say_so(tmp_path):
    import torch

    data = tmp_path / "data"
    with full_disk(data, size="64k"):
        output, metrics = previous_pair(tmp_path)
        fill_up(data)
        before = listing(tmp_path)
        with pytest.raises(BertforgeError) as raised, atomic_outputs(output, metrics) as staged:
            # torch.save reports a full disk as "unexpected pos 576 vs 534"
            torch.save({"weights": torch.zeros(100_000)}, staged.directory / "state.pt")
            staged.metrics = {}
        assert str(raised.value) == f"disk full (no space left on device) while writing {output}"
        assert listing(tmp_path) == before
