"""One (init, seed): initialisation, freezing, schedule, determinism, best epoch, early stopping."""

from __future__ import annotations

import pytest
import torch

from bertforge.errors import BertforgeError
from bertforge.finetune.data import encode_split
from bertforge.finetune.pretrained import check_pretrained_export, load_export_tokenizer
from bertforge.finetune.train import build_model, freeze, make_schedule, train_seed
from tests.factories import load_embedded_task, tiny_finetune_params


def test_pretrained_init_takes_the_exports_encoder_and_scratch_does_not(export, project):
    task = load_embedded_task(*project, "sentiment")
    params = tiny_finetune_params(project[1])
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
    task = load_embedded_task(*project, "sentiment")
    params = tiny_finetune_params(project[1])
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
    task = load_embedded_task(*project, "sentiment")
    params = tiny_finetune_params(project[1], epochs=1)
    config = check_pretrained_export(export, None, 32)
    tokenizer = load_export_tokenizer(export)
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
    task = load_embedded_task(*project, "sentiment")
    params = tiny_finetune_params(project[1], epochs=10, learning_rate=3e-3, warmup_fraction=0.0)
    config = check_pretrained_export(export, None, 32)
    tokenizer = load_export_tokenizer(export)
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
    task = load_embedded_task(*project, "sentiment")
    params = tiny_finetune_params(
        project[1], epochs=8, learning_rate=1e-9, early_stopping_patience=2
    )
    config = check_pretrained_export(export, None, 32)
    tokenizer = load_export_tokenizer(export)
    encoded = {
        s: encode_split(tokenizer, task, task.split(s), 32) for s in ("train", "dev", "test")
    }
    _, result = train_seed(task, encoded, "scratch", 0, export, config, params)
    assert len(result.history) == result.best_epoch + 2 < 8
