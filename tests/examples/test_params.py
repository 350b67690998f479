"""params.yaml `examples`: inconsistent values are one-line errors naming the parameter."""

from __future__ import annotations

import pytest

from bertforge.errors import BertforgeError
from bertforge.examples.params import ExamplesParams
from bertforge.params import parse


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"max_predictions_per_seq": 126}, "examples.max_predictions_per_seq must be in"),
        ({"masked_lm_prob": 0.0}, "examples.masked_lm_prob must be in"),
        ({"masked_lm_prob": 1.0}, "examples.masked_lm_prob must be in"),
        ({"max_seq_length": 7}, "examples.max_seq_length must be in"),
        ({"masking": "sometimes"}, "examples.masking must be one of"),
        ({"negative_pool_size": 1}, "examples.negative_pool_size must be at least 2"),
    ],
)
def test_inconsistent_params_are_one_line_errors_naming_the_parameter(values, message):
    with pytest.raises(BertforgeError, match=message):
        parse(ExamplesParams, values, "params.yaml: examples")


def test_max_predictions_may_reach_max_seq_length_minus_two_without_nsp():
    assert parse(ExamplesParams, {"nsp": False, "max_predictions_per_seq": 126}, "x")
    with pytest.raises(BertforgeError):
        parse(ExamplesParams, {"nsp": True, "max_predictions_per_seq": 126}, "x")
