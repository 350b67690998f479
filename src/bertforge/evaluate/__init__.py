"""The evaluation: every task, pretrained vs from scratch vs the baselines, and the average.

- `baselines`: the majority class and TF-IDF bag-of-words, fit on fine-tuning's training subset;
- `results`: what the ``finetune@<task>`` stages wrote, bootstrap standard errors, the table
  (metrics/eval.json) with the at-floor verdicts and the GLUE-style average;
- `report`: reports/eval.md.

Nothing here is imported by fine-tuning, so editing the report re-runs only this stage.
"""

from bertforge.evaluate.baselines import BASELINES, BaselineRun, fit_baselines
from bertforge.evaluate.report import render_report
from bertforge.evaluate.results import (
    EvaluateParams,
    at_floor,
    bootstrap_errors,
    collect_results,
    evaluate_results,
    headline_errors,
    read_predictions,
)

__all__ = [
    "BASELINES",
    "BaselineRun",
    "EvaluateParams",
    "at_floor",
    "bootstrap_errors",
    "collect_results",
    "evaluate_results",
    "fit_baselines",
    "headline_errors",
    "read_predictions",
    "render_report",
]
