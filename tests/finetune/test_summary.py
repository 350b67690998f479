"""Per-seed metrics summarized over seeds."""

from __future__ import annotations

from bertforge.finetune.summary import mean_std


def test_mean_std_is_the_sample_standard_deviation():
    assert mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0}
    assert mean_std([0.5]) == {"mean": 0.5, "std": 0.0}
