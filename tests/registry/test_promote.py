"""The promotion gate: beat the champion by more than the margin and the seed spread.

(Promotion, its alias moves and rollback against a real store are checked through the
`bertforge` command in test_cli.py.)
"""

from __future__ import annotations

from bertforge.registry.promote import gate
from tests.factories import eval_summary


def test_gate_passes_a_gain_beyond_margin_and_seed_spread():
    assert gate(eval_summary(0.85, 0.01), eval_summary(0.80, 0.02), margin=0.01) is None


def test_gate_refuses_a_gain_within_the_seed_spread():
    verdict = gate(eval_summary(0.83, 0.01), eval_summary(0.80, 0.04), margin=0.0)
    assert verdict and "within the seed spread" in verdict


def test_gate_refuses_a_gain_not_beyond_the_margin():
    verdict = gate(eval_summary(0.83, 0.001), eval_summary(0.80, 0.001), margin=0.05)
    assert verdict and "by more than the margin 0.05" in verdict


def test_gate_refuses_a_worse_candidate():
    assert gate(eval_summary(0.70, 0.0), eval_summary(0.80, 0.0), margin=0.0)
