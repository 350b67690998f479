"""Examples to tensors: the BERT input layout, truncation and length-bucketed batches."""

from __future__ import annotations

import dataclasses

import numpy as np

from bertforge.finetune.data import encode_split, length_bucketed_batches
from bertforge.finetune.pretrained import load_export_tokenizer
from tests.factories import load_embedded_task


def test_a_literal_special_token_in_task_text_is_text_not_a_separator(export, project):
    task = load_embedded_task(*project, "sentiment")
    tokenizer = load_export_tokenizer(export)
    sep = tokenizer.token_to_id("[SEP]")
    example = dataclasses.replace(task.train[0], texts=("good [SEP] bad",))
    encoded = encode_split(tokenizer, task, [example], 32)
    ids = encoded.input_ids[0].tolist()
    assert ids[0] == tokenizer.token_to_id("[CLS]") and ids[-1] == sep
    assert ids.count(sep) == 1


def test_pairs_are_encoded_cls_a_sep_b_sep_with_segment_ids_and_truncated(export, project):
    task = load_embedded_task(*project, "similar")
    tokenizer = load_export_tokenizer(export)
    encoded = encode_split(tokenizer, task, task.dev, max_seq_length=8)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    ids, types = encoded.input_ids[0], encoded.token_type_ids[0]
    assert len(ids) == 8 and ids[0] == cls and ids[-1] == sep
    first_sep = list(ids).index(sep)
    assert set(types[: first_sep + 1]) == {0} and set(types[first_sep + 1 :]) == {1}
    assert encoded.targets.dtype == np.float32


def test_length_buckets_use_every_row_once_and_group_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 64, 1000)
    batches = length_bucketed_batches(lengths, 16, np.random.default_rng(1), window=10)
    rows = np.concatenate(batches)
    assert sorted(rows) == list(range(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    random_padded = sum(16 * lengths[rows[i : i + 16]].max() for i in range(0, 1000, 16))
    real = lengths.sum()
    assert padded - real < 0.5 * (random_padded - real)  # at most half the padding
    again = length_bucketed_batches(lengths, 16, np.random.default_rng(1), window=10)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))
