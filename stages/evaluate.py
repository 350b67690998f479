"""evaluate: one table of every task, pretrained vs from scratch, and the GLUE-style average.

Reads data/finetuned/<task>/ for every task in params.yaml finetune.tasks; writes
metrics/eval.json (DVC metrics) and reports/eval.md, and logs both to MLflow.
"""

from __future__ import annotations

from pathlib import Path

from bertforge.evaluate import EvaluateParams, collect_results, evaluate_results, render_report
from bertforge.finetune.params import FinetuneParams
from bertforge.io import write_json_atomic
from bertforge.params import flatten, load_section
from bertforge.stage import run_stage
from bertforge.tracking import stage_run

FINETUNED = Path("data/finetuned")
METRICS = Path("metrics/eval.json")
REPORT = Path("reports/eval.md")


def main() -> None:
    params = load_section(EvaluateParams, "evaluate")
    finetune = load_section(FinetuneParams, "finetune")
    results = collect_results(FINETUNED, list(finetune.tasks), finetune.inits, finetune.seeds)
    evaluation = evaluate_results(results, finetune.inits, finetune.seeds, params.headline_split)
    with stage_run("evaluate", params, inputs={"finetuned": FINETUNED}) as run:
        write_json_atomic(METRICS, evaluation)
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        staging = REPORT.with_name(f".{REPORT.name}.tmp")
        staging.write_text(render_report(evaluation), encoding="utf-8")
        staging.replace(REPORT)
        numbers = flatten({"average": evaluation["average"], "tasks": evaluation["tasks"]})
        run.log_metrics(numbers)
        run.log_pipeline_metrics(
            {f"eval.{k}": v for k, v in numbers.items() if k.startswith("average.")}
        )
        run.log_artifact(METRICS)
        run.log_artifact(REPORT)


if __name__ == "__main__":
    run_stage(main)
