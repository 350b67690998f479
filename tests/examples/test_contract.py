"""The contract every examples shard is checked against before it is written
(`bertforge.schemas.examples_schema`): what a valid instance is, and each corruption refused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bertforge.errors import BertforgeError
from bertforge.schemas import examples_schema, validate

CLS, SEP, MASK = 2, 3, 4


def contract(nsp: bool = True, masking: str = "static"):
    return examples_schema(100, CLS, SEP, 16, 3, nsp, masking)


def instance_frame(**overrides) -> pd.DataFrame:
    row = {
        "input_ids": np.array([CLS, 10, MASK, SEP, 12, 13, SEP], dtype=np.uint16),
        "segment_b_start": np.int16(4),
        "masked_lm_positions": np.array([2, 5], dtype=np.int16),
        "masked_lm_ids": np.array([11, 13], dtype=np.uint16),
        "next_sentence_label": np.int8(1),
    } | overrides
    frame = pd.DataFrame([row])
    frame["segment_b_start"] = frame["segment_b_start"].astype("int16")
    frame["next_sentence_label"] = frame["next_sentence_label"].astype("int8")
    return frame


def test_contract_accepts_a_valid_instance():
    validate(contract(), instance_frame(), "here")


@pytest.mark.parametrize(
    ("corruption", "message"),
    [
        ({"input_ids": np.array([5, 10, MASK, SEP, 12, 13, SEP], np.uint16)}, "start with"),
        ({"input_ids": np.array([CLS, 10, MASK, SEP, 12, 13, 14], np.uint16)}, "end with"),
        ({"input_ids": np.array([CLS, 10, MASK, 9, 12, 13, SEP], np.uint16)}, "segment_b_start"),
        ({"input_ids": np.array([CLS, 10, 100, SEP, 12, 13, SEP], np.uint16)}, "< 100"),
        ({"input_ids": np.array([CLS, *[7] * 14, SEP, 8, SEP], np.uint16)}, "to 16 ids"),
        ({"segment_b_start": np.int16(7)}, "segment_b_start"),
        ({"masked_lm_positions": np.array([0, 5], np.int16)}, "masked_lm_positions"),
        ({"masked_lm_positions": np.array([3, 5], np.int16)}, "masked_lm_positions"),
        ({"masked_lm_positions": np.array([5, 2], np.int16)}, "masked_lm_positions"),
        ({"masked_lm_positions": np.array([2, 2], np.int16)}, "masked_lm_positions"),
        ({"masked_lm_positions": np.array([2, 9], np.int16)}, "masked_lm_positions"),
        ({"masked_lm_ids": np.array([11], np.uint16)}, "masked_lm_positions"),
        (
            {
                "masked_lm_positions": np.array([], np.int16),
                "masked_lm_ids": np.array([], np.uint16),
            },
            "1 to 3 of them",
        ),
        ({"next_sentence_label": np.int8(-1)}, "isin"),
    ],
)
def test_contract_rejects_a_corrupted_instance(corruption, message):
    with pytest.raises(BertforgeError, match=message):
        validate(contract(), instance_frame(**corruption), "data/examples/train")


def test_contract_without_nsp_wants_label_minus_one_and_no_segment_b():
    frame = instance_frame(
        input_ids=np.array([CLS, 10, MASK, 12, SEP], np.uint16),
        segment_b_start=np.int16(5),
        masked_lm_positions=np.array([2], np.int16),
        masked_lm_ids=np.array([11], np.uint16),
        next_sentence_label=np.int8(-1),
    )
    validate(contract(nsp=False), frame, "here")
    with pytest.raises(BertforgeError, match="isin"):
        validate(contract(nsp=False), frame.assign(next_sentence_label=np.int8(0)), "here")


def test_contract_with_dynamic_masking_wants_no_stored_masks():
    frame = instance_frame(
        masked_lm_positions=np.array([], np.int16), masked_lm_ids=np.array([], np.uint16)
    )
    validate(contract(masking="dynamic"), frame, "here")
    with pytest.raises(BertforgeError, match="masked_lm_positions"):
        validate(contract(masking="dynamic"), instance_frame(), "here")
