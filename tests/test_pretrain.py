"""Pretraining library: params, batch arithmetic, data order, schedule, input checks, skipping.

The fixture project (`write_fixture_project`, also used by test_pretrain_stage.py) is a tiny
tokenizer and examples shards in the data/examples contract, written with pyarrow.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from bertforge.errors import BertforgeError
from bertforge.examples import MaskingRule, create_masked_lm_predictions
from bertforge.model import BertForPreTraining
from bertforge.params import parse
from bertforge.pretrain import (
    BatchPlan,
    CheckpointStore,
    Collator,
    ExampleSplit,
    PretrainParams,
    PretrainPaths,
    StepResult,
    accumulation_steps,
    build_engine,
    check_device_support,
    check_inputs,
    consolidated_state_dict,
    eval_batches,
    free_port,
    learning_rate,
    start_distributed,
    train_step,
    training_fingerprint,
    unigram_counts,
)
from bertforge.schemas import examples_arrow_schema

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS_TEXT = (
    "the a of and to in is was it for on with as by at from that this he she they we you cat "
    "dog bird fish tree house river city road car boat king queen man woman child day night "
    "sun moon star water fire stone wind rain snow red blue green white black old new big "
    "small good bad runs sees eats makes takes goes comes says knows"
)
WORDS = WORDS_TEXT.split()
LETTERS = list("abcdefghijklmnopqrstuvwxyz")
VOCAB = SPECIAL_TOKENS + WORDS + LETTERS + [f"##{letter}" for letter in LETTERS] + [".", ","]

TINY_MODEL = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 32,
    "hidden_dropout_prob": 0.1,  # dropout draws from the per-rank generators a resume restores
    "attention_probs_dropout_prob": 0.1,
}
TINY_PARAMS = {
    "model": TINY_MODEL,
    "processes": 1,
    "zero_stage": 2,
    "micro_batch_size": 8,
    "global_batch_size": 16,
    "lr": 0.002,
    "warmup_steps": 2,
    "max_steps": 6,
    "checkpoint_every": 3,
    "keep_checkpoints": 2,
    "eval_batch_size": 16,
    "log_every": 1,
    "length_bucket_batches": 2,
}


def write_tokenizer(directory: Path) -> None:
    """vocab.txt, tokenizer.json (BERT's WordPiece pipeline) and transformers' config files."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    vocab = {token: index for index, token in enumerate(VOCAB)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "model_max_length": 32,
        **{f"{name}_token": f"[{name.upper()}]" for name in ("unk", "sep", "pad", "cls", "mask")},
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")
    special_map = {
        f"{name}_token": f"[{name.upper()}]" for name in ("unk", "sep", "pad", "cls", "mask")
    }
    (directory / "special_tokens_map.json").write_text(json.dumps(special_map), encoding="utf-8")


def synthetic_examples(count: int, seed: int, max_seq_length: int = 32) -> list[dict]:
    """[CLS] A [SEP] B [SEP] rows of Zipf-distributed words, statically masked (15%)."""
    rng = np.random.default_rng(seed)
    ids = {token: index for index, token in enumerate(VOCAB)}
    word_ids = np.array([ids[word] for word in WORDS])
    zipf = 1.0 / np.arange(1, len(word_ids) + 1)
    rule = MaskingRule(
        masked_lm_prob=0.15,
        max_predictions_per_seq=5,
        vocab_size=len(VOCAB),
        mask_id=ids["[MASK]"],
        unmaskable_ids=(ids["[CLS]"], ids["[SEP]"]),
    )
    rows = []
    for _ in range(count):
        length_a = int(rng.integers(2, 12))
        length_b = int(rng.integers(1, max_seq_length - 3 - length_a + 1))
        segment_a = rng.choice(word_ids, size=length_a, p=zipf / zipf.sum())
        segment_b = rng.choice(word_ids, size=length_b, p=zipf / zipf.sum())
        tokens = np.concatenate(
            [[ids["[CLS]"]], segment_a, [ids["[SEP]"]], segment_b, [ids["[SEP]"]]]
        )
        masked, positions, labels = create_masked_lm_predictions(
            tokens.astype(np.uint16), rule, rng
        )
        rows.append(
            {
                "input_ids": masked.astype(np.uint16),
                "segment_b_start": 2 + length_a,
                "masked_lm_positions": positions.astype(np.int16),
                "masked_lm_ids": labels.astype(np.uint16),
                "next_sentence_label": int(rng.integers(0, 2)),
            }
        )
    return rows


def write_examples(
    directory: Path, tokenizer_dir: Path, train: int = 128, heldout: int = 40
) -> None:
    """data/examples: two train shards and one held-out shard, and meta.json."""
    from bertforge.vocab import vocab_digest

    schema = examples_arrow_schema(len(VOCAB))
    counts = {"train": train, "heldout": heldout}
    for split_index, (split, count) in enumerate(counts.items()):
        rows = synthetic_examples(count, seed=split_index)
        (directory / split).mkdir(parents=True, exist_ok=True)
        shards = [rows[: count // 2], rows[count // 2 :]] if split == "train" else [rows]
        for index, shard in enumerate(shards):
            table = pa.Table.from_pylist(shard, schema=schema)
            pq.write_table(table, directory / split / f"part-{index:05d}.parquet")
    ids = {token: index for index, token in enumerate(VOCAB)}
    meta = {
        "vocab_digest": vocab_digest(tokenizer_dir),
        "vocab_size": len(VOCAB),
        "id_dtype": "uint16",
        "special_token_ids": {token: ids[token] for token in SPECIAL_TOKENS},
        "instances": counts,
        "dupe_factor": {"train": 1, "heldout": 1},
        "max_seq_length": 32,
        "masking": "static",
        "nsp": True,
        "whole_word_mask": False,
        "max_predictions_per_seq": 5,
        "masked_lm_prob": 0.15,
        "short_seq_prob": 0.1,
        "negative_pool_size": 10,
        "random_seed": 0,
    }
    (directory / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def write_fixture_project(root: Path, **overrides) -> Path:
    """A directory the stage can run in: params.yaml, data/tokenizer, data/examples."""
    write_tokenizer(root / "data/tokenizer")
    write_examples(root / "data/examples", root / "data/tokenizer")
    write_params(root, **overrides)
    return root


def write_params(root: Path, **overrides) -> dict:
    params = {**TINY_PARAMS, **overrides}
    (root / "params.yaml").write_text(yaml.safe_dump({"pretrain": params}), encoding="utf-8")
    return params


def pretrain_params(**overrides) -> PretrainParams:
    return parse(PretrainParams, {**TINY_PARAMS, **overrides}, "params.yaml: pretrain")


def paths_in(root: Path) -> PretrainPaths:
    return PretrainPaths(
        examples=root / "data/examples",
        tokenizer=root / "data/tokenizer",
        checkpoints=root / "data/pretrained/checkpoints",
        export=root / "data/pretrained/model",
        train_log=root / "metrics/pretrain_log.tsv",
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_fixture_project(tmp_path)


# --- params and batch arithmetic -----------------------------------------------------------------


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
        ({"model": {**TINY_MODEL, "hidden_size": 33}}, "pretrain.model.hidden_size must be a mult"),
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


# --- learning rate ---------------------------------------------------------------------------


def test_learning_rate_warms_up_linearly_then_decays_linearly_without_reaching_zero():
    params = pretrain_params(lr=1.0, warmup_steps=4, max_steps=12)
    rates = [learning_rate(params, step) for step in range(1, 13)]
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4:] == pytest.approx([1.0, 7 / 8, 6 / 8, 5 / 8, 4 / 8, 3 / 8, 2 / 8, 1 / 8])


def test_polynomial_decay_raises_the_remaining_fraction_to_the_power():
    params = pretrain_params(
        lr=2.0, warmup_steps=0, max_steps=4, decay="polynomial", decay_power=2.0
    )
    rates = [learning_rate(params, step) for step in range(1, 5)]
    assert rates == pytest.approx([2.0, 2.0 * (3 / 4) ** 2, 2.0 * (2 / 4) ** 2, 2.0 * (1 / 4) ** 2])


# --- data order ------------------------------------------------------------------------------


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


def cpu_collator(
    split: ExampleSplit, dynamic_masking: MaskingRule | None = None, seed: int = 0
) -> Collator:
    """The collator of the fixture examples on CPU ([PAD] 0, at most 5 predictions a row)."""
    return Collator(
        split,
        pad_id=0,
        max_predictions_per_seq=5,
        device=torch.device("cpu"),
        dynamic_masking=dynamic_masking,
        seed=seed,
        mask_domain=0,
    )


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
    ids = {token: index for index, token in enumerate(VOCAB)}
    rule = MaskingRule(
        masked_lm_prob=0.15,
        max_predictions_per_seq=5,
        vocab_size=len(VOCAB),
        mask_id=ids["[MASK]"],
        unmaskable_ids=(ids["[CLS]"], ids["[SEP]"]),
    )
    collate = cpu_collator(split, dynamic_masking=rule, seed=3)

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


def test_heldout_batches_are_split_evenly_across_ranks_without_overlap():
    lengths = np.arange(10)
    per_rank = [eval_batches(lengths, batch_size=3, rank=rank, world_size=3) for rank in range(3)]
    assert {len(batches) for batches in per_rank} == {2}
    counted = [i for batches in per_rank for batch, real in batches if real for i in batch.tolist()]
    assert sorted(counted) == list(range(10))


def test_unigram_baseline_counts_the_train_targets_or_every_maskable_token(project: Path):
    split = ExampleSplit.load(project / "data/examples/train")
    meta = json.loads((project / "data/examples/meta.json").read_text(encoding="utf-8"))
    targets = np.concatenate([np.asarray(ids) for ids in split.table["masked_lm_ids"].to_pylist()])
    assert (
        unigram_counts(split, meta).tolist() == np.bincount(targets, minlength=len(VOCAB)).tolist()
    )
    dynamic = unigram_counts(split, meta | {"masking": "dynamic"})
    tokens = np.concatenate([np.asarray(ids) for ids in split.table["input_ids"].to_pylist()])
    expected = np.bincount(tokens, minlength=len(VOCAB))
    special = meta["special_token_ids"]
    expected[[special["[CLS]"], special["[SEP]"], special["[PAD]"]]] = 0  # never masked
    assert dynamic.tolist() == expected.tolist()


# --- inputs ----------------------------------------------------------------------------------


def test_inputs_made_with_another_tokenizer_are_refused(project: Path):
    vocab = project / "data/tokenizer/vocab.txt"
    vocab.write_text(vocab.read_text(encoding="utf-8") + "extra\n", encoding="utf-8")
    with pytest.raises(BertforgeError, match=r"the examples were made with another tokenizer"):
        check_inputs(pretrain_params(), paths_in(project), world_size=1)


def test_token_ids_outside_the_vocabulary_name_the_shard_and_row(project: Path):
    shard = project / "data/examples/heldout/part-00000.parquet"
    rows = pq.read_table(shard).to_pylist()
    rows[7]["input_ids"][2] = len(VOCAB) + 3
    pq.write_table(pa.Table.from_pylist(rows, schema=examples_arrow_schema(len(VOCAB))), shard)
    with pytest.raises(
        BertforgeError, match=rf"part-00000.parquet: row 7 has token id {len(VOCAB) + 3}"
    ):
        check_inputs(pretrain_params(), paths_in(project), world_size=1)


def test_position_table_shorter_than_the_examples_is_refused(project: Path):
    params = pretrain_params(model={**TINY_MODEL, "max_position_embeddings": 16})
    with pytest.raises(BertforgeError, match=r"max_position_embeddings must be at least the"):
        check_inputs(params, paths_in(project), world_size=1)


def test_training_fingerprint_ignores_knobs_that_do_not_change_the_weights():
    base = training_fingerprint(pretrain_params(), 2, "v", "e")
    assert (
        training_fingerprint(pretrain_params(log_every=3, checkpoint_every=9), 2, "v", "e") == base
    )
    assert training_fingerprint(pretrain_params(lr=0.5), 2, "v", "e") != base
    assert training_fingerprint(pretrain_params(), 1, "v", "e") != base


# --- checkpoints -----------------------------------------------------------------------------


def fake_checkpoint(
    store: CheckpointStore, step: int, fingerprint: dict, max_steps: int = 100
) -> None:
    directory = store.directory / store.tag(step)
    directory.mkdir(parents=True)
    state = {"step": step, "max_steps": max_steps, "fingerprint": fingerprint}
    (directory / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")


def test_only_the_checkpoint_named_by_latest_is_resumed_and_newer_partial_ones_are_removed(
    tmp_path,
):
    store = CheckpointStore(tmp_path / "checkpoints")
    fingerprint = {"pretrain.lr": 0.1}
    fake_checkpoint(store, 10, fingerprint)
    (store.directory / "latest").write_text(store.tag(10), encoding="utf-8")
    (store.directory / store.tag(20)).mkdir()  # killed while writing: no marker points to it
    assert store.prepare(fingerprint) == store.tag(10)
    assert sorted(path.name for path in store.directory.glob("step-*")) == [store.tag(10)]


def test_unfinished_run_with_other_params_is_an_error_naming_what_changed(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints")
    fake_checkpoint(store, 10, {"pretrain.lr": 0.1, "world_size": 1})
    (store.directory / "latest").write_text(store.tag(10), encoding="utf-8")
    with pytest.raises(
        BertforgeError, match=r"unfinished run \(10 of 100 steps\).*changed: pretrain.lr"
    ):
        store.resumable_tag({"pretrain.lr": 0.2, "world_size": 1})


def test_finished_run_with_other_params_is_superseded_by_a_fresh_start(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints")
    fake_checkpoint(store, 100, {"pretrain.lr": 0.1}, max_steps=100)
    (store.directory / "latest").write_text(store.tag(100), encoding="utf-8")
    assert store.prepare({"pretrain.lr": 0.2}) is None
    assert not list(store.directory.glob("step-*")) and not (store.directory / "latest").exists()


# --- a step with a non-finite loss -------------------------------------------------------------


class PoisonableBert(BertForPreTraining):
    """BERT whose loss is multiplied by `poison`: NaN makes the fault a step must survive."""

    poison = 1.0

    def forward(self, *args, **kwargs):
        output = super().forward(*args, **kwargs)
        return output._replace(loss=output.loss * self.poison)


@pytest.fixture(scope="module")
def single_process_job():
    """This test process as a DeepSpeed job of one rank (gloo), torn down after the module."""
    with pytest.MonkeyPatch.context() as patch:
        job = {
            "RANK": "0",
            "LOCAL_RANK": "0",
            "WORLD_SIZE": "1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(free_port()),
            "DS_ACCELERATOR": "cpu",
        }
        for name, value in job.items():
            patch.setenv(name, value)
        yield start_distributed()
        torch.distributed.destroy_process_group()


def optimizer_state(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [
        value.clone()
        for state in optimizer.state.values()
        for value in state.values()
        if torch.is_tensor(value)
    ]


@pytest.mark.parametrize("zero_stage", [0, 2])
def test_a_nonfinite_loss_skips_the_update_and_the_next_step_trains(
    single_process_job, project: Path, zero_stage: int
):
    params = pretrain_params(zero_stage=zero_stage)
    inputs = check_inputs(params, paths_in(project), world_size=1)
    torch.manual_seed(0)
    model = PoisonableBert(inputs.config)
    engine, optimizer = build_engine(model, params, inputs, single_process_job)
    split = ExampleSplit.load(project / "data/examples/train")
    collate = cpu_collator(split)
    batches = [collate(np.arange(0, 8)), collate(np.arange(8, 16))]

    def step() -> StepResult:
        return train_step(engine, optimizer, batches, 1e-3, lambda batch: 0.0)

    assert not step().skipped  # a real update first, so the optimizer has state to protect
    weights, moments = consolidated_state_dict(engine.module), optimizer_state(optimizer)
    model.poison = float("nan")
    poisoned = step()
    assert poisoned.skipped and poisoned.sums["nonfinite"] == 2
    after = consolidated_state_dict(engine.module)
    assert all(torch.equal(weights[name], after[name]) for name in weights)
    assert all(torch.equal(a, b) for a, b in zip(moments, optimizer_state(optimizer), strict=True))
    model.poison = 1.0
    assert not step().skipped
    trained = consolidated_state_dict(engine.module)
    assert not all(torch.equal(weights[name], trained[name]) for name in weights)
