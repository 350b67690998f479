"""The learning-rate schedule."""

from __future__ import annotations

import pytest

from bertforge.pretrain.engine import learning_rate
from tests.factories import pretrain_params


def test_learning_rate_warms_up_linearly_then_decays_linearly_without_reaching_zero():
    params = pretrain_params(lr=1.0, warmup_steps=4, max_steps=12)
    rates = [learning_rate(params, step) for step in range(1, 13)]
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4:] == pytest.approx([1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])


def test_polynomial_decay_raises_the_remaining_fraction_to_the_power():
    params = pretrain_params(
        lr=2.0, warmup_steps=0, max_steps=4, decay="polynomial", decay_power=2.0
    )
    rates = [learning_rate(params, step) for step in range(1, 5)]
    assert rates == pytest.approx([2.0, 2.0 * (3 / 4) ** 2, 2.0 * (2 / 4) ** 2, 2.0 * (1 / 4) ** 2])
