"""Fine-tuning library: the export checks, the recipe's steps, determinism and outputs.

Also home of the fixtures the stage tests share: a tiny random pretraining export with a real
WordPiece tokenizer (`make_tiny_export`) and small learnable tasks (`write_embedded_tasks`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import BertWordPieceTokenizer

from bertforge.errors import BertforgeError
from bertforge.finetune import (
    FinetuneParams,
    build_model,
    check_pretrained_export,
    collect_results,
    encode_split,
    evaluate_results,
    finetune_task,
    freeze,
    length_bucketed_batches,
    load_tokenizer,
    make_schedule,
    mean_std,
    parallelism,
    pretrain_run_id,
    render_report,
    summarize_seeds,
    train_seed,
)
from bertforge.io import hash_path
from bertforge.model import BertConfig, BertForPreTraining, save_pretrained
from bertforge.params import parse
from bertforge.tasks import TaskSpec, load_task

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
POSITIVE = ["good", "great", "fine", "happy", "bright", "warm", "kind", "calm"]
NEGATIVE = ["bad", "awful", "poor", "sad", "dark", "cold", "cruel", "angry"]
FILLER = ["the", "a", "day", "film", "meal", "song", "walk", "book", "was", "felt", "very", "so"]
ANIMALS = ["cat", "dog", "bird", "fish", "horse", "mouse", "snake", "frog"]


def fixture_sentences(count: int = 400, seed: int = 0) -> list[str]:
    """Text covering every fixture word, to train the tiny WordPiece vocabulary on."""
    rng = random.Random(seed)
    words = POSITIVE + NEGATIVE + FILLER + ANIMALS
    return [" ".join(rng.choice(words) for _ in range(rng.randint(4, 10))) for _ in range(count)]


def make_tiny_export(directory: Path, *, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A random BertForPreTraining export with a WordPiece tokenizer: the pretrain stage's shape."""
    directory.mkdir(parents=True, exist_ok=True)
    trainer = BertWordPieceTokenizer(lowercase=True)
    trainer.train_from_iterator(
        fixture_sentences(), vocab_size=200, min_frequency=1, special_tokens=SPECIAL_TOKENS
    )
    trainer.save_model(str(directory))
    tokenizer = BertWordPieceTokenizer(str(directory / "vocab.txt"), lowercase=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        save_pretrained(BertForPreTraining(config), directory)
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizerFast", "do_lower_case": True})
    )
    (directory / "special_tokens_map.json").write_text(
        json.dumps(
            {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]"}
            | {"cls_token": "[CLS]", "mask_token": "[MASK]"}
        )
    )
    return directory


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def sentiment_rows(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        positive = rng.random() < 0.5
        words = [rng.choice(FILLER) for _ in range(4)]
        words.insert(rng.randrange(5), rng.choice(POSITIVE if positive else NEGATIVE))
        rows.append({"sentence": " ".join(words), "label": "pos" if positive else "neg"})
    return rows


def similarity_rows(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        first = rng.sample(ANIMALS, 3)
        shared = rng.randint(0, 3)
        second = first[:shared] + rng.sample([a for a in ANIMALS if a not in first], 3 - shared)
        rows.append(
            {"sentence1": " ".join(first), "sentence2": " ".join(second), "label": shared * 5 / 3}
        )
    return rows


def write_embedded_tasks(root: Path, sizes: tuple[int, int, int] = (64, 24, 24)) -> dict:
    """Two embedded tasks under root/data/raw/tasks and their params.yaml specs."""
    for split, count, seed in zip(("train", "dev", "test"), sizes, (1, 2, 3), strict=True):
        write_jsonl(root / f"data/raw/tasks/sentiment/{split}.jsonl", sentiment_rows(count, seed))
        write_jsonl(root / f"data/raw/tasks/similar/{split}.jsonl", similarity_rows(count, seed))
    return {
        "sentiment": {
            "source": "embedded",
            "path": "data/raw/tasks/sentiment",
            "kind": "classification",
            "text_columns": ["sentence"],
            "metric": "accuracy",
        },
        "similar": {
            "source": "embedded",
            "path": "data/raw/tasks/similar",
            "kind": "regression",
            "text_columns": ["sentence1", "sentence2"],
            "metric": "pearson",
        },
    }


def tiny_params(tasks: dict, **overrides) -> FinetuneParams:
    values = {
        "tasks": tasks,
        "seeds": [0, 1],
        "epochs": 2,
        "batch_size": 16,
        "max_seq_length": 32,
        "learning_rate": 1e-3,
    }
    return parse(FinetuneParams, values | overrides, "params.yaml: finetune")


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return make_tiny_export(tmp_path_factory.mktemp("export") / "model")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("project")
    return root, write_embedded_tasks(root)


def loaded_task(project, name):
    root, specs = project
    return load_task(
        name, parse(TaskSpec, specs[name] | {"path": str(root / specs[name]["path"])}, "t")
    )


# --- the pretrained export -------------------------------------------------------------------


def test_export_check_accepts_a_matching_model_and_tokenizer(export):
    config = check_pretrained_export(export, export / "vocab.txt", 32)
    assert config.vocab_size == len((export / "vocab.txt").read_text().splitlines())


def test_a_literal_special_token_in_task_text_is_text_not_a_separator(export, project):
    task = loaded_task(project, "sentiment")
    tokenizer = load_tokenizer(export)
    sep = tokenizer.token_to_id("[SEP]")
    example = dataclasses.replace(task.train[0], texts=("good [SEP] bad",))
    encoded = encode_split(tokenizer, task, [example], 32)
    ids = encoded.input_ids[0].tolist()
    assert ids[0] == tokenizer.token_to_id("[CLS]") and ids[-1] == sep
    assert ids.count(sep) == 1


def test_export_whose_config_vocab_size_differs_from_vocab_txt_is_refused(export, tmp_path):
    broken = make_tiny_export(tmp_path / "model")
    config = json.loads((broken / "config.json").read_text())
    config["vocab_size"] += 3
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        BertforgeError, match=r"config.json: vocab_size \d+ does not match .*vocab.txt"
    ):
        check_pretrained_export(broken, None, 32)


def test_export_with_another_vocabulary_than_the_pipelines_is_refused(export, tmp_path):
    reference = tmp_path / "tokenizer" / "vocab.txt"
    reference.parent.mkdir()
    lines = (export / "vocab.txt").read_text().splitlines()
    reference.write_text("\n".join([*lines[:-2], lines[-1], lines[-2]]) + "\n")
    with pytest.raises(BertforgeError, match=r"vocab.txt differs from .*tokenizer/vocab.txt"):
        check_pretrained_export(export, reference, 32)


def test_max_seq_length_beyond_the_models_positions_is_a_params_error(export):
    with pytest.raises(BertforgeError, match=r"finetune.max_seq_length must be at most .* \(64\)"):
        check_pretrained_export(export, None, 128)


def test_pretrain_run_id_comes_from_lineage_json_and_may_be_absent(tmp_path):
    assert pretrain_run_id(tmp_path) is None
    (tmp_path / "lineage.json").write_text(json.dumps({"mlflow_run_id": "abc123"}))
    assert pretrain_run_id(tmp_path) == "abc123"


# --- params ----------------------------------------------------------------------------------


def test_params_parse_each_task_spec_and_name_a_bad_task_key(project):
    _, specs = project
    params = tiny_params(specs)
    assert isinstance(params.task("sentiment"), TaskSpec)
    bad = specs | {"broken": {"source": "embedded", "path": "x", "kind": "classification"}}
    with pytest.raises(BertforgeError, match=r"^params.yaml: finetune.tasks.broken.text_columns"):
        tiny_params(bad)


def test_a_task_not_in_params_is_a_one_line_error_listing_the_known_tasks(project):
    with pytest.raises(BertforgeError, match=r"has no task 'nosuch' \(known: sentiment, similar\)"):
        tiny_params(project[1]).task("nosuch")


def test_frozen_layers_need_the_freeze_strategy(project):
    with pytest.raises(BertforgeError, match=r"finetune\.frozen_layers must be 0 unless"):
        tiny_params(project[1], frozen_layers=1)


# --- the recipe's steps ----------------------------------------------------------------------


def test_pairs_are_encoded_cls_a_sep_b_sep_with_segment_ids_and_truncated(export, project):
    task = loaded_task(project, "similar")
    tokenizer = load_tokenizer(export)
    encoded = encode_split(tokenizer, task, task.dev, max_seq_length=8)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    ids, types = encoded.input_ids[0], encoded.token_type_ids[0]
    assert len(ids) == 8 and ids[0] == cls and ids[-1] == sep
    first_sep = list(ids).index(sep)
    assert set(types[: first_sep + 1]) == {0} and set(types[first_sep + 1 :]) == {1}
    assert encoded.targets.dtype == np.float32


def test_pretrained_init_takes_the_exports_encoder_and_scratch_does_not(export, project):
    task = loaded_task(project, "sentiment")
    params = tiny_params(project[1])
    config = check_pretrained_export(export, None, 32)
    from safetensors.torch import load_file

    saved = load_file(export / "model.safetensors")
    name = "bert.encoder.layer.1.output.dense.weight"
    pretrained = build_model("pretrained", export, config, task, params, 0)
    scratch = build_model("scratch", export, config, task, params, 0)
    assert torch.equal(pretrained.state_dict()[name], saved[name])
    assert not torch.equal(scratch.state_dict()[name], saved[name])
    assert pretrained.label_names == ("neg", "pos")


def test_freeze_strategies_train_only_what_they_say(export, project):
    task = loaded_task(project, "sentiment")
    params = tiny_params(project[1])
    config = check_pretrained_export(export, None, 32)

    def trainable(strategy, layers):
        model = build_model("pretrained", export, config, task, params, 0)
        freeze(model, strategy, layers)
        return {name for name, p in model.named_parameters() if p.requires_grad}

    assert trainable("head_only", 0) == {"classifier.weight", "classifier.bias"}
    partly = trainable("freeze", 1)
    assert not any(n.startswith(("bert.embeddings.", "bert.encoder.layer.0.")) for n in partly)
    assert any(n.startswith("bert.encoder.layer.1.") for n in partly)
    with pytest.raises(BertforgeError, match="frozen_layers must be at most the model's 2 layers"):
        freeze(build_model("pretrained", export, config, task, params, 0), "freeze", 3)


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


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("linear", [0.5, 1.0, 1.0, 0.75, 0.5, 0.25]),
        ("constant", [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]),
        ("cosine", [0.5, 1.0, 1.0, 0.8535534, 0.5, 0.1464466]),
    ],
)
def test_learning_rate_warms_up_then_follows_its_schedule(kind, expected):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = make_schedule(optimizer, kind, warmup_steps=2, total_steps=6)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates == pytest.approx(expected, abs=1e-6)


def test_same_seed_gives_identical_weights_and_another_seed_does_not(export, project):
    task = loaded_task(project, "sentiment")
    params = tiny_params(project[1], epochs=1)
    config = check_pretrained_export(export, None, 32)
    tokenizer = load_tokenizer(export)
    encoded = {
        s: encode_split(tokenizer, task, task.split(s), 32) for s in ("train", "dev", "test")
    }
    before = torch.random.get_rng_state()
    runs = [
        train_seed(task, encoded, "pretrained", seed, export, config, params)[1]
        for seed in (0, 0, 1)
    ]
    assert torch.equal(torch.random.get_rng_state(), before)
    name = "classifier.weight"
    assert torch.equal(runs[0].state_dict[name], runs[1].state_dict[name])
    assert not torch.equal(runs[0].state_dict[name], runs[2].state_dict[name])


def test_fine_tuning_learns_a_learnable_task_and_keeps_the_best_dev_epoch(export, project):
    task = loaded_task(project, "sentiment")
    params = tiny_params(project[1], epochs=10, learning_rate=3e-3, warmup_fraction=0.0)
    config = check_pretrained_export(export, None, 32)
    tokenizer = load_tokenizer(export)
    encoded = {
        s: encode_split(tokenizer, task, task.split(s), 32) for s in ("train", "dev", "test")
    }
    _, result = train_seed(task, encoded, "pretrained", 0, export, config, params)
    assert [record["epoch"] for record in result.history] == list(range(1, 11))
    assert all(record["lr"] >= 0 and "train_loss" in record for record in result.history)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    best = max(result.history, key=lambda record: record["score"])
    assert result.best_epoch == best["epoch"]
    assert result.metrics["dev"]["score"] == pytest.approx(best["score"])
    assert result.metrics["test"]["accuracy"] > 0.7


def test_early_stopping_ends_training_after_patience_epochs_without_improvement(export, project):
    task = loaded_task(project, "sentiment")
    params = tiny_params(project[1], epochs=8, learning_rate=1e-9, early_stopping_patience=2)
    config = check_pretrained_export(export, None, 32)
    tokenizer = load_tokenizer(export)
    encoded = {
        s: encode_split(tokenizer, task, task.split(s), 32) for s in ("train", "dev", "test")
    }
    _, result = train_seed(task, encoded, "scratch", 0, export, config, params)
    assert len(result.history) == result.best_epoch + 2 < 8


# --- outputs and evaluation ------------------------------------------------------------------


def test_finetune_task_writes_every_seed_and_the_summary_has_mean_and_std(
    export, project, tmp_path
):
    task = loaded_task(project, "similar")
    params = tiny_params(project[1], epochs=1, inits=["pretrained", "scratch"])
    config = check_pretrained_export(export, None, 32)
    seed_metrics = finetune_task(task, export, config, params, tmp_path / "similar")
    for init in ("pretrained", "scratch"):
        for seed in (0, 1):
            seed_dir = tmp_path / "similar" / init / f"seed-{seed}"
            assert (seed_dir / "model" / "model.safetensors").is_file()
            assert (seed_dir / "model" / "tokenizer.json").is_file()
            rows = (seed_dir / "predictions" / "test.jsonl").read_text().splitlines()
            assert len(rows) == len(task.test)
            assert set(json.loads(rows[0])) == {"row", "subset", "label", "prediction"}
    summary = summarize_seeds(task.describe(), seed_metrics)
    pearsons = [m["test"]["pearson"] for m in seed_metrics if m["init"] == "scratch"]
    assert summary["scratch"]["test"]["pearson"] == mean_std(pearsons)
    assert summary["primary_metric"] == "pearson"
    assert set(summary["pretrained"]["dev"]) == {"pearson", "spearman", "mse", "score"}


def test_outputs_are_byte_identical_again_and_whatever_the_number_of_processes(
    export, project, tmp_path
):
    task = loaded_task(project, "sentiment")
    config = check_pretrained_export(export, None, 32)
    for name, processes in (("first", 1), ("second", 1), ("spawned", 2)):
        params = tiny_params(
            project[1], epochs=1, inits=["scratch"], seeds=[3, 4], processes=processes, threads=1
        )
        finetune_task(task, export, config, params, tmp_path / name)
    assert hash_path(tmp_path / "first") == hash_path(tmp_path / "second")
    assert hash_path(tmp_path / "first") == hash_path(tmp_path / "spawned")


def test_processes_default_to_one_per_core_and_never_more_than_the_runs(project):
    cores = len(os.sched_getaffinity(0))
    assert parallelism(tiny_params(project[1]), runs=64) == (cores, 1)
    assert parallelism(tiny_params(project[1]), runs=1) == (1, cores)
    assert parallelism(tiny_params(project[1], processes=3, threads=2), runs=6) == (3, 2)


def test_mean_std_is_the_sample_standard_deviation():
    assert mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0}
    assert mean_std([0.5]) == {"mean": 0.5, "std": 0.0}


def fake_results(scores: dict[str, dict[str, list[float]]]) -> dict:
    results = {}
    for task, by_init in scores.items():
        info = {"name": task, "metric": "accuracy", "test_is_dev": task == "glue"}
        metrics = [
            {
                "init": init,
                "seed": seed,
                "dev": {"accuracy": value, "score": value},
                "test": {"accuracy": value, "score": value},
            }
            for init, values in by_init.items()
            for seed, value in enumerate(values)
        ]
        results[task] = (info, metrics)
    return results


def test_the_average_is_taken_per_seed_over_tasks_then_over_seeds():
    results = fake_results(
        {
            "a": {"pretrained": [0.8, 0.9, 1.0], "scratch": [0.5, 0.5, 0.5]},
            "glue": {"pretrained": [0.6, 0.5, 0.4], "scratch": [0.3, 0.4, 0.5]},
        }
    )
    evaluation = evaluate_results(results, ["pretrained", "scratch"], [0, 1, 2], "test")
    average = evaluation["average"]["test"]
    assert average["pretrained"] == pytest.approx({"mean": 0.7, "std": 0.0})
    assert average["scratch"]["mean"] == pytest.approx(0.45)
    assert average["delta"] == pytest.approx(0.25)
    report = render_report(evaluation)
    assert "| glue † | accuracy |" in report
    assert "Headline split: **test**" in report
    assert "more than the seed-to-seed standard deviation" in report


def test_evaluation_refuses_a_task_whose_seeds_differ_from_params(tmp_path):
    task_dir = tmp_path / "a"
    (task_dir / "pretrained" / "seed-0").mkdir(parents=True)
    (task_dir / "task.json").write_text(json.dumps({"name": "a", "metric": "accuracy"}))
    (task_dir / "pretrained" / "seed-0" / "metrics.json").write_text(
        json.dumps({"init": "pretrained", "seed": 0, "dev": {}, "test": {}})
    )
    with pytest.raises(
        BertforgeError, match=r"has seeds \[0\], params.yaml finetune.seeds is \[0, 1\]"
    ):
        collect_results(tmp_path, ["a"], ["pretrained"], [0, 1])
    with pytest.raises(BertforgeError, match=r"b/task.json: not found; run finetune@b first"):
        collect_results(tmp_path, ["b"], ["pretrained"], [0])
