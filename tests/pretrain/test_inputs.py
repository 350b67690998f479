"""Input checks: one line, before any worker starts; the training fingerprint."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bertforge.errors import BertforgeError
from bertforge.pretrain.inputs import check_inputs, training_fingerprint
from bertforge.schemas import examples_arrow_schema
from tests.factories import PRETRAIN_TINY_MODEL, PRETRAIN_VOCAB, pretrain_params, pretrain_paths


def test_inputs_made_with_another_tokenizer_are_refused(project: Path):
    vocab = project / "data/tokenizer/vocab.txt"
    vocab.write_text(vocab.read_text(encoding="utf-8") + "extra\n", encoding="utf-8")
    with pytest.raises(BertforgeError, match=r"the examples were made with another tokenizer"):
        check_inputs(pretrain_params(), pretrain_paths(project), world_size=1)


def test_token_ids_outside_the_vocabulary_name_the_shard_and_row(project: Path):
    shard = project / "data/examples/heldout/part-00000.parquet"
    rows = pq.read_table(shard).to_pylist()
    rows[7]["input_ids"][2] = len(PRETRAIN_VOCAB) + 3
    schema = examples_arrow_schema(len(PRETRAIN_VOCAB))
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), shard)
    with pytest.raises(
        BertforgeError, match=rf"part-00000.parquet: row 7 has token id {len(PRETRAIN_VOCAB) + 3}"
    ):
        check_inputs(pretrain_params(), pretrain_paths(project), world_size=1)


def test_position_table_shorter_than_the_examples_is_refused(project: Path):
    params = pretrain_params(model={**PRETRAIN_TINY_MODEL, "max_position_embeddings": 16})
    with pytest.raises(BertforgeError, match=r"max_position_embeddings must be at least the"):
        check_inputs(params, pretrain_paths(project), world_size=1)


def test_training_fingerprint_ignores_knobs_that_do_not_change_the_weights():
    base = training_fingerprint(pretrain_params(), 2, "v", "e")
    assert (
        training_fingerprint(pretrain_params(log_every=3, checkpoint_every=9), 2, "v", "e") == base
    )
    assert training_fingerprint(pretrain_params(lr=0.5), 2, "v", "e") != base
    assert training_fingerprint(pretrain_params(), 1, "v", "e") != base
