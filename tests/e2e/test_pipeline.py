"""End-to-end: the real `dvc repro` on a temp git copy of the project with tiny params."""

from __future__ import annotations

import inspect
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support import REPO_ROOT, copy_project, stage_env

TINY_PARAMS = REPO_ROOT / "tests" / "fixtures" / "params-tiny.yaml"

pytestmark = pytest.mark.slow


def dvc(project: Path, *args: str) -> str:
    result = subprocess.run(
        ["dvc", *args],
        cwd=project,
        env=stage_env() | {"DVC_NO_ANALYTICS": "1"},
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("e2e") / "project")
    shutil.copy(TINY_PARAMS, project / "params.yaml")
    return project


def test_dvc_repro_vocab_builds_tokenizer_then_skips_then_reruns_only_vocab(tiny_project):
    first = dvc(tiny_project, "repro", "vocab")
    assert "Running stage 'ingest'" in first and "Running stage 'vocab'" in first

    vocab = (tiny_project / "data/tokenizer/vocab.txt").read_text().splitlines()
    tiny = yaml.safe_load(TINY_PARAMS.read_text())
    assert vocab[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert len(vocab) <= tiny["vocab"]["vocab_size"]
    assert (tiny_project / "data/tokenizer/tokenizer.json").is_file()
    ingest_metrics = json.loads((tiny_project / "metrics/ingest.json").read_text())
    vocab_metrics = json.loads((tiny_project / "metrics/vocab.json").read_text())
    assert ingest_metrics and vocab_metrics
    assert list((tiny_project / "data/ingested/train").glob("part-*.parquet"))

    second = dvc(tiny_project, "repro", "vocab")
    assert "Running stage" not in second

    params = yaml.safe_load((tiny_project / "params.yaml").read_text())
    params["vocab"]["vocab_size"] = tiny["vocab"]["vocab_size"] - 100
    (tiny_project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    third = dvc(tiny_project, "repro", "vocab")
    assert "Running stage 'vocab'" in third
    assert "Running stage 'ingest'" not in third


def test_dvc_repro_runs_the_whole_pipeline_to_registered_models(tiny_project):
    output = dvc(tiny_project, "repro")
    for stage in ("examples", "pretrain", "evaluate", "register"):
        assert f"Running stage '{stage}'" in output, output

    tiny = yaml.safe_load((tiny_project / "params.yaml").read_text())
    tasks = sorted(tiny["finetune"]["tasks"])
    assert (tiny_project / "data/pretrained/model/model.safetensors").is_file()
    evaluation = json.loads((tiny_project / "metrics/eval.json").read_text())
    assert evaluation
    report = (tiny_project / "reports/eval.md").read_text()
    for task in tasks:
        assert task in report
        assert (tiny_project / f"metrics/finetune/{task}.json").is_file()
    registry = json.loads((tiny_project / "metrics/registry.json").read_text())
    registered = json.dumps(registry)
    assert "bertforge-encoder" in registered
    for task in tasks:
        assert f"bertforge-{task}" in registered

    assert "Running stage" not in dvc(tiny_project, "repro")


def lock_hashes(project: Path) -> dict[tuple[str, str], str]:
    """(stage, path) → md5 of every output and metric dvc.lock records."""
    stages = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    return {
        (stage, out["path"]): out.get("md5", "")
        for stage, entry in stages.items()
        for out in entry.get("outs", [])
    }


def test_a_forced_rerun_of_pretrain_changes_only_its_timing_metrics(tiny_project):
    """`dvc repro --force` re-runs pretrain over its persisted checkpoints (the finished run
    resumes and re-exports): the export is byte-identical, so every later stage stays cached,
    and of all the outputs only the timing metrics change (issue #15, caching that holds)."""
    dvc(tiny_project, "repro")
    before = lock_hashes(tiny_project)
    forced = dvc(tiny_project, "repro", "--force", "--single-item", "pretrain")
    assert "resuming from data/pretrained/checkpoints/step-" in forced, forced
    assert changed_stages(tiny_project) == set()
    after = lock_hashes(tiny_project)
    changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    timing = {("pretrain", "metrics/pretrain.json"), ("pretrain", "metrics/pretrain_log.tsv")}
    assert changed <= timing, changed


def changed_stages(project: Path) -> set[str]:
    """The stages `dvc status` says are out of date (their deps, params or outs changed)."""
    status = json.loads(dvc(project, "status", "--json").strip().splitlines()[-1] or "{}")
    return set(status)


def test_editing_report_registry_or_logging_code_reruns_no_training_stage(tiny_project):
    """dvc.yaml's deps are the code that shapes each stage's bytes, nothing wider (issue #14)."""
    dvc(tiny_project, "repro")
    assert changed_stages(tiny_project) == set()

    from bertforge import tracking
    from bertforge.evaluate import render_report
    from bertforge.registry import promote

    for module in (inspect.getsourcefile(render_report), promote.__file__, tracking.__file__):
        edited = tiny_project / Path(module).relative_to(REPO_ROOT)
        edited.write_text(edited.read_text() + "\n# an edit that changes no output\n")

    assert changed_stages(tiny_project) == {"evaluate"}
