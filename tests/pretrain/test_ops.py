"""DeepSpeed's compiled ops: none built on CPU, tools checked up front, stale build locks."""

from __future__ import annotations

import pytest

from bertforge.errors import BertforgeError
from bertforge.pretrain.ops import check_build_tools, clear_stale_build_locks, skip_unused_ops
from tests.factories import pretrain_params


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
