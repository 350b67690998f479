"""evaluate: one table of every task — pretrained, from scratch, majority and bag-of-words.

Reads data/finetuned/<task>/ for every task in params.yaml finetune.tasks, and each task's data
(the same training subset as the fine-tuning) to fit the baselines; writes metrics/eval.json
(DVC metrics) and reports/eval.md, and logs both to MLflow.
"""

from __future__ import annotations

from pathlib import Path

from bertforge.evaluate import (
    EvaluateParams,
    collect_results,
    evaluate_results,
    fit_baselines,
    headline_errors,
    read_predictions,
    render_report,
)
from bertforge.finetune.params import FinetuneParams
from bertforge.finetune.tasks import load_task
from bertforge.io import atomic_outputs
from bertforge.params import flatten, load_section
from bertforge.stage import run_stage
from bertforge.tracking import stage_run

FINETUNED = Path("data/finetuned")
METRICS = Path("metrics/eval.json")
REPORT = Path("reports/eval.md")


def main() -> None:
    params = load_section(EvaluateParams, "evaluate")
    finetune = load_section(FinetuneParams, "finetune")
    inits, seeds, split = finetune.inits, finetune.seeds, params.headline_split
    results = collect_results(FINETUNED, list(finetune.tasks), inits, seeds)
    baselines, bootstrap = {}, {}
    for name in finetune.tasks:
        task = load_task(name, finetune.task(name))
        baselines[name] = fit_baselines(task)
        predictions = {
            init: [read_predictions(FINETUNED / name, init, seed, split) for seed in seeds]
            for init in inits
        }
        bootstrap[name] = headline_errors(task, params, predictions, baselines[name])
    evaluation = evaluate_results(results, inits, seeds, split, baselines, bootstrap)
    with stage_run("evaluate", params, inputs={"finetuned": FINETUNED}) as run:
        # metrics/eval.json and reports/eval.md are swapped in together, last
        with atomic_outputs(None, METRICS, files=[REPORT]) as staged:
            staged.path(REPORT).write_text(render_report(evaluation), encoding="utf-8")
            staged.metrics = evaluation
        numbers = flatten({"average": evaluation["average"], "tasks": evaluation["tasks"]})
        run.log_metrics(numbers)
        run.log_pipeline_metrics(
            {f"eval.{k}": v for k, v in numbers.items() if k.startswith("average.")}
        )
        run.log_artifact(METRICS)
        run.log_artifact(REPORT)


if __name__ == "__main__":
    run_stage(main)
