"""Params and the batch arithmetic: one-line errors naming the parameter."""

from __future__ import annotations

import pytest

from bertforge.errors import BertforgeError
from bertforge.pretrain.params import accumulation_steps, check_device_support
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
        ({"precision": "bf16"}, "precision bf16 needs a GPU"),
        ({"optimizer": "lamb"}, "lamb needs a GPU"),
    ],
)
def test_gpu_only_features_are_refused_on_cpu(override, message):
    with pytest.raises(BertforgeError, match=message):
        check_device_support(pretrain_params(**override), "cpu")
    check_device_support(pretrain_params(**override), "cuda")
