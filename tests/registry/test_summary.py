"""Eval metrics as version tags: what promotion compares travels with the version."""

from __future__ import annotations

from bertforge.registry.summary import EvalSummary
from bertforge.tracking import TAG_PREFIX
from tests.factories import eval_summary


def test_eval_summary_round_trips_through_version_tags():
    original = eval_summary(0.8125, 0.0301)
    assert EvalSummary.from_tags(original.to_tags()) == original


def test_a_version_without_its_primary_metric_has_no_summary():
    tags = eval_summary(0.8).to_tags()
    del tags[f"{TAG_PREFIX}metric.accuracy.mean"]
    assert EvalSummary.from_tags(tags) is None
    assert EvalSummary.from_tags({}) is None
