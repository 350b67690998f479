"""The ``register:`` section of params.yaml."""

from __future__ import annotations

import pytest

from bertforge.errors import BertforgeError
from bertforge.params import parse
from bertforge.registry.params import RegisterParams


def test_register_params_name_each_task_model_and_check_the_template():
    params = RegisterParams()
    assert params.model_name("sst2") == "bertforge-sst2"
    with pytest.raises(BertforgeError, match=r"task_model_name must contain \{task\}"):
        parse(RegisterParams, {"task_model_name": "fixed"}, "params.yaml: register")
    with pytest.raises(BertforgeError, match="promotion_margin must be >= 0"):
        parse(RegisterParams, {"promotion_margin": -0.1}, "params.yaml: register")
