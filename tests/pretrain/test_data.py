"""Data order and collation: which examples each rank reads, padding, dynamic masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bertforge.constants import IGNORE_INDEX
from bertforge.examples.meta import read_meta
from bertforge.pretrain.data import (
    BatchPlan,
    Collator,
    ExampleSplit,
    collate_instances,
    masking_rule,
)
from bertforge.pretrain.rng import MASK
from bertforge.shards import iter_batches
from tests.factories import (
    cpu_collator,
    make_examples,
    make_examples_project,
    pretrain_masking_rule,
    small_examples_params,
)

# --- data order --------------------------------------------------------------------------------


def plan_for(
    lengths: np.ndarray,
    world_size: int = 2,
    micro: int = 4,
    accumulation: int = 2,
    window: int = 3,
    seed: int = 7,
) -> BatchPlan:
    return BatchPlan(
        lengths,
        seed=seed,
        world_size=world_size,
        micro_batch_size=micro,
        accumulation=accumulation,
        window=window,
    )


def test_ranks_train_on_disjoint_examples_that_cover_each_epoch():
    lengths = np.random.default_rng(0).integers(5, 60, size=100)
    plan = plan_for(lengths)
    assert plan.steps_per_epoch == 100 // 16
    seen = [
        index
        for step in range(plan.steps_per_epoch)
        for rank in range(2)
        for micro in plan.micro_batches(step, rank)
        for index in micro.tolist()
    ]
    assert len(seen) == len(set(seen)) == plan.steps_per_epoch * 16
    first_epoch = set(seen)
    second_epoch = {
        index
        for step in range(plan.steps_per_epoch, 2 * plan.steps_per_epoch)
        for rank in range(2)
        for micro in plan.micro_batches(step, rank)
        for index in micro.tolist()
    }
    assert second_epoch != first_epoch  # a new draw each epoch (other examples left out)


def test_batch_order_is_a_pure_function_of_the_step_so_resume_mid_epoch_reads_the_same():
    lengths = np.random.default_rng(1).integers(5, 60, size=200)
    walked = plan_for(lengths)
    expected = {step: [m.tolist() for m in walked.micro_batches(step, 1)] for step in range(20)}
    resumed = plan_for(lengths)
    for step in (13, 7, 19):
        assert [m.tolist() for m in resumed.micro_batches(step, 1)] == expected[step]


def test_length_bucketing_cuts_padding_and_keeps_the_same_examples():
    lengths = np.random.default_rng(2).integers(5, 128, size=4096)

    def padded_tokens(plan: BatchPlan) -> tuple[int, set[int]]:
        padding, examples = 0, set()
        for step in range(plan.steps_per_epoch):
            for rank in range(2):
                for micro in plan.micro_batches(step, rank):
                    padding += int(lengths[micro].max() * len(micro) - lengths[micro].sum())
                    examples.update(micro.tolist())
        return padding, examples

    unsorted_padding, unsorted_examples = padded_tokens(plan_for(lengths, window=0))
    bucketed_padding, bucketed_examples = padded_tokens(plan_for(lengths, window=16))
    assert bucketed_examples == unsorted_examples
    assert bucketed_padding < unsorted_padding / 5


# --- collation of the pretrain fixture ----------------------------------------------------------


def test_micro_batches_are_padded_only_to_their_longest_row_and_most_masked_row(project: Path):
    split = ExampleSplit.load(project / "data/examples/train")
    collate = cpu_collator(split)
    indices = np.array([3, 10, 11])
    batch = collate(indices)
    assert batch["input_ids"].shape == (3, int(split.lengths[indices].max()))
    assert batch["attention_mask"].sum(dim=1).tolist() == split.lengths[indices].tolist()
    masked = [len(split.table["masked_lm_ids"][int(i)]) for i in indices]
    assert batch["masked_lm_positions"].shape == batch["masked_lm_ids"].shape == (3, max(masked))


def test_dynamic_masks_depend_on_seed_epoch_and_example_not_on_the_batch(project: Path):
    split = ExampleSplit.load(project / "data/examples/train")
    collate = cpu_collator(split, dynamic_masking=pretrain_masking_rule(), seed=3)

    def row_of(batch: dict, row: int, length: int) -> tuple:
        labelled = batch["masked_lm_ids"][row] != -100
        return (
            batch["input_ids"][row, :length].tolist(),
            batch["masked_lm_positions"][row][labelled].tolist(),
            batch["masked_lm_ids"][row][labelled].tolist(),
        )

    length = int(split.lengths[5])
    alone = row_of(collate(np.array([5]), epoch=1), 0, length)
    assert row_of(collate(np.array([9, 2, 5]), epoch=1), 2, length) == alone
    assert row_of(collate(np.array([5]), epoch=2), 0, length) != alone
    assert len(alone[2]) >= 1


# --- collation of the examples stage's own output -----------------------------------------------


@pytest.fixture(scope="module")
def examples_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_examples_project(tmp_path_factory.mktemp("examples-project"))


def test_dynamic_masking_stores_instances_unmasked_and_collate_masks_them(
    examples_project, tmp_path
):
    make_examples(examples_project, tmp_path, small_examples_params(masking="dynamic"))
    meta = read_meta(tmp_path)
    batch = next(iter_batches(tmp_path / "train", batch_size=64))
    stored = batch.column("input_ids").flatten().to_numpy()
    assert not (stored == meta["special_token_ids"]["[MASK]"]).any()
    assert batch.column("masked_lm_positions").flatten().to_pylist() == []

    collate = Collator(
        ExampleSplit.load(tmp_path / "train"),  # its first 64 rows are `batch`
        pad_id=0,
        max_predictions_per_seq=20,
        device=torch.device("cpu"),
        dynamic_masking=masking_rule(meta, examples_project / "data/tokenizer"),
        seed=0,
        mask_domain=MASK,
    )
    inputs = {key: value.numpy() for key, value in collate(np.arange(64)).items()}
    again = {key: value.numpy() for key, value in collate(np.arange(64)).items()}
    assert all((inputs[key] == again[key]).all() for key in inputs), "same generator, same masks"
    lengths = inputs["attention_mask"].sum(axis=1)
    counts = (inputs["masked_lm_ids"] != IGNORE_INDEX).sum(axis=1)
    assert (counts == np.minimum(20, np.maximum(1, np.rint(lengths * 0.15)))).all()


def test_collate_instances_pads_and_derives_token_types_and_labels(examples_project, tmp_path):
    make_examples(examples_project, tmp_path, small_examples_params())
    batch = next(iter_batches(tmp_path / "train", batch_size=32))
    inputs = collate_instances(batch, 0, 20, pad_to=128)
    rows = batch.to_pylist()
    assert inputs["input_ids"].shape == (32, 128) and inputs["masked_lm_positions"].shape == (
        32,
        20,
    )
    for index, row in enumerate(rows):
        length = len(row["input_ids"])
        assert inputs["input_ids"][index, :length].tolist() == row["input_ids"]
        assert inputs["attention_mask"][index].sum() == length
        token_types = inputs["token_type_ids"][index]
        assert token_types[:length].tolist() == [
            int(position >= row["segment_b_start"]) for position in range(length)
        ]
        positions = row["masked_lm_positions"]
        assert inputs["labels"][index, positions].tolist() == row["masked_lm_ids"]
        assert (inputs["labels"][index] != IGNORE_INDEX).sum() == len(positions)
        assert inputs["next_sentence_label"][index] == row["next_sentence_label"]
