"""Hostile requests to a served model (``mlflow models serve`` on 127.0.0.1, one server start,
thirteen requests): each is a 400 whose message names the field; a good request still works."""

from __future__ import annotations

import pytest

from tests.e2e.test_registry_serving import free_ports, post_json, server, wait_until_up
from tests.factories import build_register_project, fresh_store, run_register_stage
from tests.support import stage_env

pytestmark = pytest.mark.slow

GOOD = {"text": "a [MASK] day"}
HOSTILE = [
    ({"dataframe_records": [GOOD, {"text": None}]}, "'text' of row 1 must be a string, got null"),
    ({"dataframe_records": [{"text": 123}]}, "'text' of row 0 must be a string, got the number"),
    (
        {"dataframe_records": [{"text": {"a": 1}}]},
        "'text' of row 0 must be a string, got an object",
    ),
    ({"dataframe_records": []}, "missing inputs ['text']"),  # MLflow's schema check
    ({"dataframe_split": {"columns": ["text"], "data": []}}, "no rows: send at least one 'text'"),
    ({"dataframe_records": [{"text": ""}]}, "text 0 must contain exactly one [MASK]"),
    ({"dataframe_records": [{"text": "[MASK] and [MASK]"}]}, "exactly one [MASK] (within"),
    ({"dataframe_records": [GOOD], "params": {"top_k": 0}}, "'top_k' must be between 1 and"),
    ({"dataframe_records": [GOOD], "params": {"top_k": -3}}, "'top_k' must be between 1 and"),
    ({"dataframe_records": [GOOD], "params": {"top_k": 10**6}}, "(the vocabulary size)"),
    ({"dataframe_records": [GOOD], "params": {"top_k": "many"}}, "'top_k'"),
]


def test_hostile_requests_are_400s_naming_the_field(tmp_path_factory, tmp_path, monkeypatch):
    store = fresh_store(tmp_path_factory, tmp_path, monkeypatch)
    assert run_register_stage(build_register_project(tmp_path / "project")) == 0
    (port,) = free_ports(1)
    endpoint = f"http://127.0.0.1:{port}"
    command = ["mlflow", "models", "serve", "-m", "models:/tiny-encoder/1"]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path / "model-server.log"
    with server(command, log, stage_env() | {"MLFLOW_TRACKING_URI": store}) as process:
        wait_until_up(f"{endpoint}/ping", process, log)
        for payload, words in HOSTILE:
            status, answer = post_json(f"{endpoint}/invocations", payload)
            assert status == 400, (payload, answer)
            assert words in answer.get("message", ""), (payload, answer)
        status, answer = post_json(
            f"{endpoint}/invocations", {"dataframe_records": [GOOD], "params": {"top_k": 2}}
        )
        assert status == 200, answer
        assert len(answer["predictions"][0]["tokens"]) == 2
