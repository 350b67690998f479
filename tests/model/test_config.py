"""BertConfig: transformers' config.json both ways, and its range checks."""

from __future__ import annotations

import dataclasses

import pytest
import transformers

from bertforge.errors import BertforgeError
from bertforge.model import BertConfig
from tests.model.factories import TINY


def test_config_round_trips_through_transformers_config():
    for config in (TINY, dataclasses.replace(TINY, pre_layer_norm=True, pad_token_id=3)):
        hf_config = transformers.AutoConfig.for_model(**config.to_hf_dict())
        assert BertConfig.from_hf_dict(hf_config.to_dict()) == config


def test_config_with_hidden_size_not_divisible_by_heads_is_an_error():
    with pytest.raises(BertforgeError, match=r"^hidden_size must be a multiple of num_attention"):
        dataclasses.replace(TINY, hidden_size=30)
