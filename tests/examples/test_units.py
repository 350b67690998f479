"""Work units: fixed document ranges whatever the processes, read by index, and at least two
documents each when NSP draws negatives from them."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertforge.errors import BertforgeError
from bertforge.examples.masking import MaskingRule
from bertforge.examples.params import ExamplesParams
from bertforge.examples.units import SplitDocuments, create_unit_instances, unit_ranges
from tests.factories import unit_from_sentence_lengths

SPECIAL_IDS = {"[CLS]": 2, "[SEP]": 3, "[MASK]": 4}


def test_unit_ranges_cut_fixed_units_and_merge_a_single_trailing_document():
    def unit_sizes(documents: int, unit_size: int) -> list[int]:
        ranges = unit_ranges(documents, unit_size)
        assert ranges[0][0] == 0 and ranges[-1][1] == documents
        assert all(end == start for (_, end), (start, _) in itertools.pairwise(ranges))
        return [end - start for start, end in ranges]

    assert unit_sizes(7, 3) == [3, 4]
    assert unit_sizes(8, 3) == [3, 3, 2]
    assert unit_sizes(8, 2) == [2, 2, 2, 2]
    assert unit_sizes(9, 2) == [2, 2, 2, 3]
    assert unit_sizes(1, 5) == [1]
    assert unit_sizes(5, 5) == [5]


def test_split_documents_reads_any_range_across_shards_and_row_groups(tmp_path):
    documents = [[f"document {i}.", f"sentence {i}b."] for i in range(23)]
    for shard, (start, end) in enumerate([(0, 10), (10, 17), (17, 23)]):
        table = pa.table({"sentences": pa.array(documents[start:end])})
        pq.write_table(table, tmp_path / f"part-{shard:05d}.parquet", row_group_size=4)
    split = SplitDocuments(tmp_path)
    assert split.documents == 23 and len(split.row_groups) == 3 + 2 + 2
    for start, end in [(0, 23), (0, 1), (3, 9), (9, 18), (16, 17), (22, 23), (5, 5)]:
        assert split.read(start, end).to_pylist() == documents[start:end]


def test_unit_with_a_single_document_cannot_draw_nsp_negatives():
    unit = unit_from_sentence_lengths([[5, 5]])
    params = ExamplesParams(num_proc=1)
    meta = {
        "masked_lm_prob": params.masked_lm_prob,
        "max_predictions_per_seq": params.max_predictions_per_seq,
        "vocab_size": 60_000,
        "special_token_ids": SPECIAL_IDS,
        "whole_word_mask": False,
    }
    rule = MaskingRule.from_meta(meta, {})
    with pytest.raises(BertforgeError, match="nsp needs at least two documents"):
        create_unit_instances(unit, params, SPECIAL_IDS, rule, 1, np.random.default_rng(0), "here")
