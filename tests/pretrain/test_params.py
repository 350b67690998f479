"""Params and the batch arithmetic: one-line errors naming the parameter."""

from __future__ import annotations

from pathlib import Path

import pytest

import bertforge.pretrain.params as params_module
from bertforge.errors import BertforgeError
from bertforge.pretrain.params import accumulation_steps, check_device_support, cpu_has_native_bf16
from tests.factories import PRETRAIN_TINY_MODEL, pretrain_params


def test_global_batch_must_be_a_multiple_of_micro_batch_times_processes():
    params = pretrain_params(micro_batch_size=8, global_batch_size=20)
    with pytest.raises(BertforgeError, match=r"^params.yaml: pretrain.global_batch_size must be"):
        accumulation_steps(params, world_size=2)


def test_accumulation_is_derived_from_the_global_batch_and_checked_when_given():
    assert accumulation_steps(pretrain_params(micro_batch_size=4, global_batch_size=32), 2) == 4
    given = pretrain_params(micro_batch_size=4, global_batch_size=32, gradient_accumulation_steps=2)
    with pytest.raises(BertforgeError, match=r"4 × 2 × 2 = 16, got 32"):
        accumulation_steps(given, world_size=2)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"zero_stage": 4}, "pretrain.zero_stage must be one of 0, 1, 2, 3"),
        ({"max_steps": 0}, "pretrain.max_steps must be at least 1"),
        ({"optimizer": "sgd"}, "pretrain.optimizer must be one of 'adamw', 'lamb'"),
        (
            {"model": {**PRETRAIN_TINY_MODEL, "hidden_size": 33}},
            "pretrain.model.hidden_size must be a mult",
        ),
    ],
)
def test_bad_params_are_one_line_errors_naming_the_parameter(override, message):
    with pytest.raises(BertforgeError) as error:
        pretrain_params(**override)
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"precision": "fp16"}, "precision fp16 needs a GPU"),
        ({"optimizer": "lamb"}, "lamb needs a GPU"),
    ],
)
def test_gpu_only_features_are_refused_on_cpu(override, message):
    with pytest.raises(BertforgeError, match=message):
        check_device_support(pretrain_params(**override), "cpu")
    check_device_support(pretrain_params(**override), "cuda")


def test_bf16_on_a_cpu_needs_its_bf16_instructions(monkeypatch):
    bf16 = pretrain_params(precision="bf16")
    monkeypatch.setattr(params_module, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(BertforgeError) as error:
        check_device_support(bf16, "cpu")
    message = str(error.value)
    assert message.startswith("params.yaml: pretrain.precision bf16 on a CPU needs AMX or AVX512")
    assert message.endswith("use fp32, got 'bf16'") and "\n" not in message
    monkeypatch.setattr(params_module, "cpu_has_native_bf16", lambda: True)
    check_device_support(bf16, "cpu")
    # the fp32 master weights live in ZeRO's optimizer partitions, on a CPU as on a GPU
    with pytest.raises(BertforgeError, match=r"bf16 with zero_stage 0 .* got 0$"):
        check_device_support(pretrain_params(precision="bf16", zero_stage=0), "cpu")


def test_the_bf16_probe_reads_the_cpu_flags():
    flags = (
        Path("/proc/cpuinfo").read_text(encoding="utf-8")
        if Path("/proc/cpuinfo").exists()
        else None
    )
    if flags is None:
        pytest.skip("no /proc/cpuinfo to compare with")
    native = any(f" {flag}" in flags for flag in ("amx_bf16", "avx512_bf16"))
    assert cpu_has_native_bf16() == native
