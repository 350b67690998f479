"""The pretrain stage as a user runs it: several processes over gloo, ZeRO-2 and ZeRO-3, a kill
and a resume, the export in transformers, and the one-line failures.

Each test runs stages/pretrain.py as a subprocess in a fixture project (tiny tokenizer and
examples from tests.factories; a model with hidden size 32, 2 layers, sequences up to 32).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file

from bertforge.schemas import examples_arrow_schema
from tests.factories import PRETRAIN_VOCAB, make_pretrain_project, write_pretrain_params
from tests.support import REPO_ROOT, stage_env, without_a_compiler

STAGE = REPO_ROOT / "stages/pretrain.py"
TWO_PROCESSES = {"processes": 2, "max_steps": 24, "checkpoint_every": 8, "log_every": 4}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One MLflow store for the module's runs (creating a store's tables takes seconds)."""
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


# a sitecustomize that records, at each process's exit, whether its process group was still up
# and which of PyTorch's distributed threads (gloo's workers and loops, the TCP store's) still run
EXIT_PROBE = """
import atexit, os, sys


def _record():
    dist = sys.modules.get("torch.distributed")
    up = bool(dist is not None and dist.is_available() and dist.is_initialized())
    names = []
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/comm", encoding="utf-8") as comm:
            names.append(comm.read().strip())
    threads = sorted(name for name in names if "gloo" in name or "tcpstore" in name)
    path = os.path.join(os.environ["BERTFORGE_EXIT_PROBE"], f"{os.getpid()}.exit")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"{os.environ.get('RANK', 'launcher')} {up} {threads}")


atexit.register(_record)  # first registered, so it runs after every other handler
"""


def stage_environment(store: Path) -> dict[str, str]:
    """The stage's environment: a test MLflow store, one thread per rank, no launcher set."""
    return stage_env() | {"MLFLOW_TRACKING_URI": f"sqlite:///{store}", "OMP_NUM_THREADS": "1"}


def with_exit_probe(env: dict[str, str], probe: Path) -> dict[str, str]:
    """`env` with EXIT_PROBE as the sitecustomize of every process, recording into `probe`."""
    probe.mkdir(parents=True, exist_ok=True)
    (probe / "sitecustomize.py").write_text(EXIT_PROBE, encoding="utf-8")
    path = os.pathsep.join(filter(None, [str(probe), env.get("PYTHONPATH")]))
    return env | {"BERTFORGE_EXIT_PROBE": str(probe), "PYTHONPATH": path}


def run_pretrain(
    root: Path, store: Path, probe: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The stage in `root`, in `env` (default: `stage_environment(store)`)."""
    env = stage_environment(store) if env is None else env
    return subprocess.run(
        [sys.executable, str(STAGE)],
        cwd=root,
        env=env if probe is None else with_exit_probe(env, probe),
        capture_output=True,
        text=True,
        timeout=900,
    )


def assert_succeeded(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.fixture(scope="module")
def zero3_run(tmp_path_factory: pytest.TempPathFactory, mlflow_store: Path) -> Path:
    """An uninterrupted ZeRO-3 run on two processes: the reference of the resume test. Each of
    its processes that goes through the interpreter's teardown records at exit whether its
    process group was still up, and its process-group threads (in ../probe)."""
    base = tmp_path_factory.mktemp("zero3")
    root = make_pretrain_project(base / "project", zero_stage=3, **TWO_PROCESSES)
    assert_succeeded(run_pretrain(root, mlflow_store, probe=base / "probe"))
    return root


def training_columns(log: Path) -> list[list[str]]:
    """The training log without its timing columns (tokens/s and MFU differ run to run)."""
    rows = [line.split("\t") for line in log.read_text(encoding="utf-8").splitlines()]
    timing = {rows[0].index("tokens_per_s"), rows[0].index("mfu")}
    return [[value for index, value in enumerate(row) if index not in timing] for row in rows]


def test_zero3_on_two_processes_exports_the_gathered_fp32_weights_for_transformers(zero3_run):
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    from transformers import BertForPreTraining, pipeline

    export = zero3_run / "data/pretrained/model"
    _, report = BertForPreTraining.from_pretrained(export, output_loading_info=True)
    assert not report["missing_keys"] and not report["unexpected_keys"]
    predictions = pipeline("fill-mask", model=str(export))("the cat [MASK] the dog .")
    assert len(predictions) == 5 and all(p["token_str"] for p in predictions)

    exported = load_file(export / "model.safetensors")
    shards = get_fp32_state_dict_from_zero_checkpoint(
        str(zero3_run / "data/pretrained/checkpoints")
    )
    assert set(exported) <= set(shards)
    assert all(torch.equal(exported[name], shards[name].float()) for name in exported)

    metrics = json.loads((zero3_run / "metrics/pretrain.json").read_text(encoding="utf-8"))
    assert metrics["train"]["steps"] == 24 and metrics["model"]["processes"] == 2
    assert {"mlm_accuracy", "nsp_accuracy", "unigram_mlm_accuracy"} <= set(metrics["heldout"])
    log = training_columns(zero3_run / "metrics/pretrain_log.tsv")
    assert [row[0] for row in log[1:]] == ["4", "8", "12", "16", "20", "24"]
    lineage = json.loads((export / "lineage.json").read_text(encoding="utf-8"))
    assert (
        lineage["vocab_digest"]
        == json.loads((zero3_run / "data/examples/meta.json").read_text(encoding="utf-8"))[
            "vocab_digest"
        ]
    )


def test_resume_after_kill_gives_identical_weights(zero3_run, tmp_path: Path, mlflow_store):
    root = make_pretrain_project(tmp_path, zero_stage=3, **TWO_PROCESSES)
    checkpoints = root / "data/pretrained/checkpoints"
    job = subprocess.Popen(
        [sys.executable, str(STAGE)],
        cwd=root,
        env=stage_environment(mlflow_store),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while not (checkpoints / "latest").exists():
            assert job.poll() is None, "the run ended before its first checkpoint"
            time.sleep(0.005)
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait()
    assert (checkpoints / "latest").read_text(encoding="utf-8") == "step-00000008"
    assert not (root / "data/pretrained/model").exists()

    resumed = run_pretrain(root, mlflow_store)
    assert_succeeded(resumed)
    assert "resuming from data/pretrained/checkpoints/step-00000008 (step 8)" in resumed.stderr
    reference = zero3_run / "data/pretrained/model/model.safetensors"
    assert (root / "data/pretrained/model/model.safetensors").read_bytes() == reference.read_bytes()
    assert training_columns(root / "metrics/pretrain_log.tsv") == training_columns(
        zero3_run / "metrics/pretrain_log.tsv"
    )
    # the speed is the run's: the steps before the kill (the checkpoint's record) count too
    train = json.loads((root / "metrics/pretrain.json").read_text(encoding="utf-8"))["train"]
    assert train["resumed_from_step"] == 8
    assert train["seconds"] > train["seconds_this_run"] > 0 and train["tokens_per_s"] > 0


def exit_records(probe: Path) -> list[str]:
    return sorted(path.read_text(encoding="utf-8") for path in probe.glob("*.exit"))


def test_a_zero3_rank_whose_groups_deepspeed_holds_exits_without_the_teardown(zero3_run):
    """ZeRO-3 keeps its modules, and through them the process groups, in DeepSpeed's
    module-level state: their threads outlive `stop_distributed`, so the ranks end with
    `exit_without_teardown` (no atexit record) and the job succeeds (the fixture checks)."""
    assert exit_records(zero3_run.parent / "probe") == ["launcher False []"]


def test_zero2_on_two_processes_without_a_compiler_trains_exports_and_a_rerun_only_reexports(
    tmp_path: Path, mlflow_store: Path
):
    from transformers import BertForPreTraining

    root = make_pretrain_project(tmp_path / "project", zero_stage=2, **TWO_PROCESSES)
    # with no C++ compiler on PATH: training on CPU needs none, and builds no DeepSpeed op
    env = without_a_compiler(tmp_path) | {"MLFLOW_TRACKING_URI": f"sqlite:///{mlflow_store}"}
    assert_succeeded(run_pretrain(root, mlflow_store, tmp_path / "probe", env))
    assert [path.name for path in (tmp_path / "extensions").iterdir() if path.is_dir()] == []
    # PyTorch asks every process to destroy its process groups before exiting; destroying is not
    # enough while anything refers to a group: its gloo threads run into the interpreter's
    # teardown, where a worker releasing the last all-gather's tensors takes the GIL, Python
    # ends that thread and the process aborts ("terminate called without an active exception",
    # exit code 1 after a run that finished; rare, under load; a core dump read in gdb)
    assert exit_records(tmp_path / "probe") == ["0 False []", "1 False []", "launcher False []"]
    export = root / "data/pretrained/model"
    _, report = BertForPreTraining.from_pretrained(export, output_loading_info=True)
    assert not report["missing_keys"] and not report["unexpected_keys"]
    log = training_columns(root / "metrics/pretrain_log.tsv")
    losses = [float(row[1]) for row in log[1:]]
    assert losses[-1] < losses[0]
    first_weights = (export / "model.safetensors").read_bytes()
    trained = json.loads((root / "metrics/pretrain.json").read_text(encoding="utf-8"))["train"]

    # e.g. after `dvc repro` removed the export: nothing to train
    rerun = run_pretrain(root, mlflow_store, env=env)
    assert_succeeded(rerun)
    metrics = json.loads((root / "metrics/pretrain.json").read_text(encoding="utf-8"))
    assert metrics["train"]["steps_this_run"] == 0
    assert (export / "model.safetensors").read_bytes() == first_weights
    # the re-export keeps the training's speed (from the checkpoint), not its own zero
    timing = ("seconds", "tokens_per_s", "flops_per_s", "mfu", "peak_flops_per_s")
    assert metrics["train"]["seconds_this_run"] < 0.1 * trained["seconds"]
    for key in timing:
        assert metrics["train"][key] == pytest.approx(trained[key], rel=0.1), key
        assert trained[key] > 0
    # the peak is the one MFU divides by (the training's), not a measurement of the re-export
    for train in (trained, metrics["train"]):
        assert train["mfu"] == pytest.approx(train["flops_per_s"] / train["peak_flops_per_s"])


# --- failures: one line, exit code 2, previous export intact -----------------------------------


def previous_export(root: Path) -> Path:
    export = root / "data/pretrained/model"
    export.mkdir(parents=True)
    (export / "config.json").write_text("{}", encoding="utf-8")
    return export


def assert_one_line_failure(result: subprocess.CompletedProcess, message: str) -> None:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2, result.stderr[-4000:]
    assert len(errors) == 1 and message in errors[0], result.stderr[-4000:]


def corrupt_token_id(root: Path) -> None:
    shard = root / "data/examples/train/part-00001.parquet"
    rows = pq.read_table(shard).to_pylist()
    rows[3]["masked_lm_ids"][0] = len(PRETRAIN_VOCAB)
    schema = examples_arrow_schema(len(PRETRAIN_VOCAB))
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), shard)


def change_tokenizer(root: Path) -> None:
    vocab = root / "data/tokenizer/vocab.txt"
    vocab.write_text(vocab.read_text(encoding="utf-8").replace("queen", "prince"), encoding="utf-8")


BAD_INPUTS = {
    "ids_beyond_vocab": (
        corrupt_token_id,
        {},
        f"part-00001.parquet: row 3 has token id {len(PRETRAIN_VOCAB)} in masked_lm_ids",
    ),
    "tokenizer_mismatch": (
        change_tokenizer,
        {},
        "the examples were made with another tokenizer",
    ),
    "max_steps_zero": (
        None,
        {"max_steps": 0},
        "params.yaml: pretrain.max_steps must be at least 1",
    ),
    "global_batch_not_divisible": (
        None,
        {"processes": 2, "micro_batch_size": 8, "global_batch_size": 24},
        "pretrain.global_batch_size must be a multiple of micro_batch_size × processes",
    ),
    "unknown_zero_stage": (
        None,
        {"zero_stage": 5},
        "params.yaml: pretrain.zero_stage must be one of 0, 1, 2, 3",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_exit_2_and_keeps_the_previous_export(
    tmp_path: Path, mlflow_store: Path, case: str
):
    corrupt, params, message = BAD_INPUTS[case]
    root = make_pretrain_project(tmp_path)
    if corrupt is not None:
        corrupt(root)
    write_pretrain_params(root, **params)
    export = previous_export(root)
    assert_one_line_failure(run_pretrain(root, mlflow_store), message)
    assert [path.name for path in export.iterdir()] == ["config.json"]


def test_nonfinite_losses_in_a_row_stop_both_processes_with_one_line_and_no_export(
    tmp_path: Path, mlflow_store: Path
):
    root = make_pretrain_project(
        tmp_path, processes=2, lr=1e30, max_steps=12, max_nonfinite_in_a_row=3
    )
    export = previous_export(root)
    result = run_pretrain(root, mlflow_store, probe=tmp_path / "probe")
    assert_one_line_failure(result, "were not finite for 3 steps in a row")
    assert [path.name for path in export.iterdir()] == ["config.json"]
    # each failed rank left with its groups up, so without the teardown (no atexit record)
    assert exit_records(tmp_path / "probe") == ["launcher False []"]
