"""benchmarks/profile_step.py: where a CPU pretraining step's time goes, by operator group."""

from __future__ import annotations

import pytest

from tests.support import benchmark_module, run_benchmark


@pytest.fixture(scope="module")
def script():
    return benchmark_module("profile_step")


def test_each_operator_falls_in_one_group_and_the_shares_sum_to_one(script):
    assert script.group_of("aten::addmm") == "matmuls"
    assert script.group_of("aten::_scaled_dot_product_flash_attention_for_cpu") == "attention"
    assert script.group_of("aten::_log_softmax_backward_data") == "vocabulary softmax and loss"
    assert script.group_of("aten::_fused_adamw_") == "optimizer (AdamW)"
    assert script.group_of("aten::native_layer_norm") == "other"
    found = script.shares([("aten::mm", 30.0), ("aten::addmm", 30.0), ("aten::gelu", 40.0)])
    assert list(found)[:2] == ["matmuls", "other"]  # largest first
    assert found["matmuls"] == pytest.approx(0.6) and sum(found.values()) == pytest.approx(1.0)


def test_the_default_model_is_profiled_and_every_group_is_a_row(tmp_path):
    result = run_benchmark(
        "profile_step.py",
        *("--steps", "2", "--warmup", "1"),
        *("--examples", str(tmp_path / "absent")),  # synthetic rows
        timeout_s=300,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("| ")]
    assert lines[0] == "| where the time goes | share of the step |"
    shares = {line.split(" | ")[0][2:]: float(line.split(" | ")[1][:-3]) for line in lines[2:]}
    assert set(shares) == {
        "matmuls",
        "attention",
        "vocabulary softmax and loss",
        "optimizer (AdamW)",
        "other",
    }
    assert sum(shares.values()) == pytest.approx(100, abs=0.5)
    assert shares["matmuls"] > 0 and shares["optimizer (AdamW)"] > 0
    assert "synthetic" in result.stderr and " wide × " in result.stderr
