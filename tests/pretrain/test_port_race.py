"""A rendezvous port picked free can be taken by another job before rank 0 binds it (two
pipelines, or `dvc exp` workers, starting at once): rank 0 then picks again instead of failing,
and a port the user gave that is taken is one line saying so."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap

from tests.support import REPO_ROOT, stage_env

# free_port answers a port another process already listens on, then free ones
PATCH_FREE_PORT = """
import socket
import bertforge.pretrain.launch as launch
import bertforge.pretrain.engine as engine

busy = socket.socket()
busy.bind(("127.0.0.1", 0))
busy.listen()
taken = [busy.getsockname()[1]]
original = launch.free_port

def free_port():
    return taken.pop() if taken else original()

launch.free_port = engine.free_port = free_port
"""


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO_ROOT, env=stage_env(), capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_a_lone_rank_whose_picked_port_is_taken_picks_another():
    result = run_python(
        PATCH_FREE_PORT
        + """
        from bertforge.pretrain.engine import start_distributed
        topology = start_distributed(20)
        moved = int(engine.os.environ["MASTER_PORT"]) != busy.getsockname()[1]
        print("joined", topology.world_size, moved)
        """.replace("\n        ", "\n")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "joined 1 True" in result.stdout


def test_local_ranks_whose_picked_port_is_taken_are_started_again_on_another():
    rank_script = (
        "import os, bertforge.pretrain.engine as e; t = e.start_distributed(20); "
        "os.write(1, f'rank {t.rank} of {t.world_size}\\n'.encode())"  # one atomic write
    )
    result = run_python(
        PATCH_FREE_PORT
        + f"""
        import sys
        code = launch.launch_local_processes(2, [sys.executable, "-c", {rank_script!r}])
        print("exit", code)
        """.replace("\n        ", "\n")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "the picked rendezvous port was taken meanwhile" in result.stdout
    assert "exit 0" in result.stdout
    assert "rank 0 of 2" in result.stdout and "rank 1 of 2" in result.stdout


def test_a_given_port_that_is_taken_is_one_line_naming_it():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_python(
            f"""
            import os
            os.environ["MASTER_PORT"] = "{port}"
            from bertforge.errors import BertforgeError
            from bertforge.pretrain.engine import start_distributed
            try:
                start_distributed(20)
            except BertforgeError as error:
                print("error:", error)
            """
        )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stdout
    assert f"127.0.0.1:{port}" in lines[0] and "another process uses that port" in lines[0]
