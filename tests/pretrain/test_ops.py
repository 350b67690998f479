"""DeepSpeed's compiled ops: none built on CPU, tools checked up front, stale build locks.

(That a two-process training on CPU needs no compiler and builds nothing: the ZeRO-2 test of
tests/e2e/test_pretrain_stage.py runs with none on PATH.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bertforge.errors import BertforgeError
from bertforge.pretrain.ops import check_build_tools, clear_stale_build_locks, skip_unused_ops
from tests.factories import make_pretrain_project, pretrain_params
from tests.support import REPO_ROOT, without_a_compiler


def test_the_shared_memory_op_no_training_uses_is_never_built():
    import deepspeed.ops

    skip_unused_ops()
    assert deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] is False


def test_torch_compile_without_a_cxx_compiler_is_one_line_naming_what_needs_it(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CXX", raising=False)
    check_build_tools(pretrain_params(), cuda=False)  # nothing to compile: no compiler needed
    with pytest.raises(BertforgeError, match=r"pretrain.compile: true .* needs a C\+\+ compiler"):
        check_build_tools(pretrain_params(compile=True), cuda=False)


def test_a_build_lock_left_by_a_killed_build_is_removed_from_our_own_folder(tmp_path, capsys):
    lock = tmp_path / "fused_lamb" / "lock"
    lock.parent.mkdir()
    lock.touch()
    clear_stale_build_locks(tmp_path, ours=True)
    assert not lock.exists()
    assert f"removed {lock}, left by a killed build" in capsys.readouterr().err


def test_a_build_lock_in_a_folder_the_user_chose_is_one_line_naming_it(tmp_path):
    lock = tmp_path / "fused_lamb" / "lock"
    lock.parent.mkdir()
    lock.touch()
    with pytest.raises(BertforgeError, match=f"{lock}: a build lock left by a killed build"):
        clear_stale_build_locks(tmp_path, ours=False)
    assert lock.exists()


def test_a_build_lock_is_left_alone_while_another_run_of_ours_is_alive(tmp_path):
    import fcntl

    from bertforge.pretrain.ops import BUILDERS_LOCK

    lock = tmp_path / "fused_lamb" / "lock"
    lock.parent.mkdir()
    lock.touch()
    with open(tmp_path / BUILDERS_LOCK, "a") as live_run:
        fcntl.flock(live_run, fcntl.LOCK_SH)  # another rank, perhaps building right now
        clear_stale_build_locks(tmp_path, ours=True)
    assert lock.exists()


def run_stage_without_a_compiler(root: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "stages/pretrain.py")],
        cwd=root,
        env=without_a_compiler(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_pretrain_compile_without_a_compiler_stops_up_front_in_one_line(tmp_path):
    root = make_pretrain_project(tmp_path / "project", compile=True, max_steps=2)
    result = run_stage_without_a_compiler(root, tmp_path)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(errors) == 1 and "needs a C++ compiler, but 'c++' is not on PATH" in errors[0]
    assert not (root / "data/pretrained/model").exists()


def test_joining_a_job_alone_compiles_nothing(tmp_path):
    """`start_distributed` skips the op DeepSpeed's init_distributed would build (30-50 s of
    compiling, in every caller that does not go through `prepare_ops` first)."""
    (tmp_path / "extensions").mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from bertforge.pretrain.engine import start_distributed; "
            "print('joined', start_distributed(30).world_size)",
        ],
        # a job of its own, not the session's one-rank job (stage_env leaves its port out)
        env=without_a_compiler(tmp_path) | {"DS_ACCELERATOR": "cpu"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "joined 1" in result.stdout
    assert list((tmp_path / "extensions").iterdir()) == []  # not even an empty op folder
