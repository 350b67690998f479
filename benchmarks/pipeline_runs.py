"""The pieces the measurement scripts share: a temp copy of the project, params overrides, a
`dvc repro` that fails loudly, pretraining at a wall-clock budget, and a table in a docs page.

Used by benchmarks/ablate_pretrain.py, benchmarks/budget_curve.py and
benchmarks/finetune_grid.py. Every run happens in a temp git copy of this checkout (tracked and
untracked-but-not-ignored files, as a fresh clone), never in the checkout itself; DVC's run
cache in the copy restores a stage whose inputs and params were seen before, so variants that share
examples or a pretrained model do not recompute them.

`--smoke` (every script) shrinks the pipeline to minutes: one small corpus file, a 2,000-piece
vocabulary, one dupe, two tasks of 200 training examples, one seed, one epoch. Its numbers mean
nothing; it checks that the script runs end to end.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_repro import copy_project  # noqa: E402  (tests.support's, as bench_repro uses it)

from bertforge.io import read_json  # noqa: E402
from tests.support import stage_env  # noqa: E402  (bench_repro put the root on sys.path)

# The smoke pipeline: every stage runs, on a sliver of the data (see the module docstring).
SMOKE_OVERRIDES: dict[str, Any] = {
    "ingest.sources": [{"path": "data/raw/corpus/devil.txt.xz"}],
    "vocab.vocab_size": 2000,
    "examples.dupe_factor": 1,
    "pretrain.max_steps": 20,
    "pretrain.warmup_steps": 5,
    "pretrain.checkpoint_every": 20,
    "finetune.seeds": [0],
    "finetune.epochs": 1,
    "finetune.tasks.supersense.max_train_examples": 200,
    "finetune.tasks.glosssim.max_train_examples": 200,
    "evaluate.bootstrap_resamples": 20,
}
SMOKE_TASKS = ("supersense", "glosssim")


@contextmanager
def project_copy(keep: bool = False) -> Iterator[Path]:
    """A temp git copy of this checkout, removed afterwards unless `keep` or the work in it
    failed (a failure names a log in the copy: it stays to be read)."""
    directory = Path(tempfile.mkdtemp(prefix="bertforge-bench-"))
    try:
        copy_project(directory)
        print(f"project copy: {directory}", file=sys.stderr, flush=True)
        yield directory
    except BaseException:
        keep = True
        print(f"kept the project copy after the failure: {directory}", file=sys.stderr)
        raise
    finally:
        if not keep:
            subprocess.run(["rm", "-rf", str(directory)], check=False)


def read_params(project: Path) -> dict[str, Any]:
    return yaml.safe_load((project / "params.yaml").read_text(encoding="utf-8"))


def with_overrides(params: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A fresh copy of `params` with each dotted key of `overrides` set."""
    values = json.loads(json.dumps(params))
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = values
        for key in parents:
            node = node[key]
        node[leaf] = value
    return values


def write_params(project: Path, params: Mapping[str, Any], overrides: Mapping[str, Any]) -> None:
    """params.yaml = `params` with each dotted key of `overrides` set."""
    values = with_overrides(params, overrides)
    (project / "params.yaml").write_text(yaml.safe_dump(values, sort_keys=False), "utf-8")


def setting(params: Mapping[str, Any], overrides: Mapping[str, Any], dotted: str) -> Any:
    """A params value by dotted key: the override if there is one, else params.yaml's."""
    if dotted in overrides:
        return overrides[dotted]
    node: Any = params
    for key in dotted.split("."):
        node = node[key]
    return node


def read_tsv(path: Path, fields: Sequence[str], what: str) -> list[dict[str, str]]:
    """The rows of a results TSV a measurement script keeps (none when the file does not
    exist); a file without one of `fields` is one line naming it and `what` it should be."""
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    missing = [field for field in fields if rows and field not in rows[0]]
    if missing:
        sys.exit(f"error: {path}: not {what} (no column {missing[0]!r})")
    return rows


def write_tsv(path: Path, fields: Sequence[str], rows: Iterable[Mapping[str, str]]) -> None:
    """`rows` as a TSV under `fields`, through a temporary file and a rename (a run killed
    mid-write leaves the previous file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.tmp-write")
    with partial.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fields, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    partial.replace(path)


def smoke_base(params: Mapping[str, Any]) -> dict[str, Any]:
    """The smoke overrides, with the tasks cut to `SMOKE_TASKS`."""
    tasks = {name: params["finetune"]["tasks"][name] for name in SMOKE_TASKS}
    return {"finetune.tasks": json.loads(json.dumps(tasks)), **SMOKE_OVERRIDES}


def repro(project: Path, target: str) -> float:
    """`dvc repro <target>` in the copy; its wall time. A failure stops the script (exit 1)."""
    started = time.perf_counter()
    result = subprocess.run(
        ["dvc", "repro", target],
        cwd=project,
        env=stage_env(project),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        log = project / f"repro-{target}.log"
        log.write_text(result.stdout + result.stderr, encoding="utf-8")
        errors = [line for line in log.read_text().splitlines() if "error" in line.lower()]
        sys.exit(
            f"dvc repro {target} failed in {project} (log: {log}):\n" + "\n".join(errors[-10:])
        )
    return time.perf_counter() - started


CALIBRATION_STEPS = 30  # steps of a calibration run (start-up included)


def seconds_per_step(
    project: Path,
    base: Mapping[str, Any],
    overrides: Mapping[str, Any],
    steps: int = CALIBRATION_STEPS,
) -> float:
    """Pretraining seconds per optimizer step of a variant, from a `steps`-step calibration run
    (start-up included, so the budget is on the safe side)."""
    write_params(
        project,
        base,
        {**overrides, "pretrain.max_steps": steps, "pretrain.checkpoint_every": steps},
    )
    repro(project, "pretrain")
    train = pretrain_metrics(project)["train"]
    return float(train["seconds"]) / max(1, int(train["steps_this_run"]))


def steps_for_budget(seconds_per_step: float, minutes: float) -> int:
    """Optimizer steps that fill `minutes` of pretraining at the calibrated rate."""
    return max(10, int(minutes * 60 / seconds_per_step))


def pretrain_metrics(project: Path) -> dict[str, Any]:
    """The copy's metrics/pretrain.json: held-out figures and the training loop's."""
    return read_json(project / "metrics/pretrain.json", "pretrain")


def results(project: Path) -> dict[str, Any]:
    """What a measurement row needs: held-out pretraining metrics and the evaluation."""
    pretrain = pretrain_metrics(project)
    evaluation = read_json(project / "metrics/eval.json", "evaluate")
    return {"pretrain": pretrain, "eval": evaluation}


def average(evaluation: Mapping[str, Any], model: str, split: str = "test") -> tuple[float, float]:
    """(mean, seed std) of a model's average score on `split`."""
    stats = evaluation["average"][split][model]
    return float(stats["mean"]), float(stats["std"])


def replace_section(page: Path, name: str, table: str) -> None:
    """Put `table` between ``<!-- <name>:begin -->`` and ``<!-- <name>:end -->`` in `page`
    (appended at the end, with the markers, the first time)."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = page.read_text(encoding="utf-8")
    block = f"{begin}\n{table.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    page.write_text(text, encoding="utf-8")
