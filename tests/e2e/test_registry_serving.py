"""Serving for real: a tracking server, the register stage against it, promote, then
``mlflow models serve -m models:/<name>@champion --env-manager local`` answering REST requests.

Also the quick look (`bertforge predict`) on the fill-mask encoder and a pair task, in-process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from bertforge.cli import main
from tests.factories import build_register_project, empty_store, fresh_store, run_register_stage
from tests.support import stage_env

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path_factory, tmp_path, monkeypatch) -> str:
    return fresh_store(tmp_path_factory, tmp_path, monkeypatch)


def free_ports(count: int) -> list[int]:
    """Distinct ports free right now (all probes are held open together)."""
    probes = [socket.socket() for _ in range(count)]
    try:
        for probe in probes:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in probes]
    finally:
        for probe in probes:
            probe.close()


@contextmanager
def server(command: list[str], log: Path, env: dict[str, str]):
    """Start a server process (its own process group) and stop the group when done."""
    with open(log, "w") as handle:
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        yield process
    finally:
        stop_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            stop_group(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def stop_group(group: int, signal_number: int) -> None:
    """Signal the process group this test started (the server and its workers)."""
    with suppress(ProcessLookupError):
        os.killpg(group, signal_number)


def wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} not up after {timeout}s:\n{log.read_text()[-3000:]}")


def post_json(url: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def test_champion_served_by_mlflow_models_serve_answers_rest_predictions(
    tmp_path_factory, tmp_path, monkeypatch, capsys
):
    project = build_register_project(tmp_path / "project")
    backend = tmp_path / "server" / "mlflow.db"
    backend.parent.mkdir()
    shutil.copy(empty_store(tmp_path_factory.getbasetemp()), backend)
    tracking_port, serving_port = free_ports(2)
    tracking = f"http://127.0.0.1:{tracking_port}"
    env = stage_env() | {"MLFLOW_TRACKING_URI": tracking}
    env.pop("MLFLOW_REGISTRY_URI", None)
    tracking_command = [
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{backend}",
        "--artifacts-destination",
        str(tmp_path / "server" / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(tracking_port),
        "--workers",
        "1",
    ]
    tracking_log = tmp_path / "tracking-server.log"
    # The server's job runner (a pool of huey workers) is not needed for tracking and registry.
    tracking_env = env | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with server(tracking_command, tracking_log, tracking_env) as tracking_server:
        wait_until_up(f"{tracking}/health", tracking_server, tracking_log)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking)
        monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
        assert run_register_stage(project) == 0
        assert main(["promote", "tiny-sentiment"]) == 0
        assert main(["promote", "tiny-encoder"]) == 0

        serve_command = [
            "mlflow",
            "models",
            "serve",
            "-m",
            "models:/tiny-sentiment@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(serving_port),
        ]
        serving_log = tmp_path / "model-server.log"
        with server(serve_command, serving_log, env) as model_server:
            endpoint = f"http://127.0.0.1:{serving_port}"
            wait_until_up(f"{endpoint}/ping", model_server, serving_log)
            status, answer = post_json(
                f"{endpoint}/invocations",
                {"dataframe_records": [{"text": "the film was good"}, {"text": "so sad"}]},
            )
            assert status == 200, answer
            predictions = answer["predictions"]
            assert len(predictions) == 2
            for prediction in predictions:
                assert prediction["label"] in {"neg", "pos"}
                assert set(prediction["scores"]) == {"neg", "pos"}
                assert sum(prediction["scores"].values()) == pytest.approx(1.0, abs=1e-5)
                assert prediction["score"] == max(prediction["scores"].values())
            status, answer = post_json(
                f"{endpoint}/invocations", {"dataframe_records": [{"sentence": "no text column"}]}
            )
            assert status == 400, answer

        capsys.readouterr()
        assert (
            main(["predict", "models:/tiny-encoder@champion", "a [MASK] day", "--top-k", "3"]) == 0
        )
        filled = json.loads(capsys.readouterr().out)
        assert len(filled["tokens"]) == len(filled["scores"]) == 3
        assert filled["scores"] == sorted(filled["scores"], reverse=True)
        assert filled["sequence"].startswith("a ") and "[MASK]" not in filled["sequence"]
        assert main(["predict", "models:/tiny-encoder@champion", "no mask here"]) == 2
        assert "exactly one [MASK]" in capsys.readouterr().err


def test_predict_on_a_pair_task_takes_two_texts_and_returns_a_value(store, tmp_path, capsys):
    project = build_register_project(tmp_path / "project")
    assert run_register_stage(project) == 0
    capsys.readouterr()
    assert main(["predict", "models:/tiny-similar/1", "cat dog bird", "dog bird fish"]) == 0
    value = json.loads(capsys.readouterr().out)["value"]
    assert isinstance(value, float)
    assert main(["predict", "models:/tiny-similar/1", "only one text"]) == 2
    assert "text-pair model: give two texts" in capsys.readouterr().err
