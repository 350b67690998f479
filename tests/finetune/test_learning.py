"""Fine-tuning that learns: standardised regression targets, mean pooling, what is exported."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bertforge.errors import BertforgeError
from bertforge.finetune.data import TargetScale, encode_split, pad_batch
from bertforge.finetune.pooling import MeanPooledClassifier, check_exportable
from bertforge.finetune.pretrained import check_pretrained_export, load_export_tokenizer
from bertforge.finetune.train import build_model, decode, predict, train_seed
from tests.factories import load_embedded_task, tiny_finetune_params


def encoded_task(export, project, name):
    task = load_embedded_task(*project, name)
    tokenizer = load_export_tokenizer(export)
    splits = ("train", "dev", "test")
    return task, {s: encode_split(tokenizer, task, task.split(s), 32) for s in splits}


def test_regression_trains_on_standardised_targets_and_the_kept_model_predicts_raw_ones(
    export, project
):
    task, encoded = encoded_task(export, project, "similar")
    params = tiny_finetune_params(project[1], epochs=2)
    config = check_pretrained_export(export, None, 32)
    model, result = train_seed(task, encoded, "pretrained", 0, export, config, params)
    scale = TargetScale.of(encoded["train"], regression=True)
    assert scale.std > 0 and scale.mean == pytest.approx(np.mean(encoded["train"].targets))
    # the head has the scale folded in: the model itself predicts what the stage predicted
    direct = decode(task, predict(model, encoded["dev"], 64, config.pad_token_id))
    np.testing.assert_allclose(direct, result.predictions["dev"], rtol=1e-4, atol=1e-4)
    # and on the targets' scale: the mean prediction is near the mean target, not near 0
    assert abs(np.mean(direct) - scale.mean) < 2 * scale.std


def test_folding_the_scale_into_a_linear_head_equals_restoring_its_outputs():
    head = torch.nn.Linear(4, 1)
    features = torch.randn(5, 4)
    scale = TargetScale(mean=2.5, std=1.5)
    expected = scale.restore(head(features).detach().numpy())
    scale.fold_into(head.weight, head.bias)
    np.testing.assert_allclose(head(features).detach().numpy(), expected, rtol=1e-6)


def test_mean_pooling_averages_real_tokens_only(export, project):
    task, encoded = encoded_task(export, project, "sentiment")
    params = tiny_finetune_params(project[1], pooling="mean")
    config = check_pretrained_export(export, None, 32)
    model = build_model("pretrained", export, config, task, params, 0)
    assert isinstance(model, MeanPooledClassifier)
    model.eval()
    rows = np.array([int(np.argmin([len(ids) for ids in encoded["dev"].input_ids])), 0])
    padded = pad_batch(encoded["dev"], rows, config.pad_token_id)
    alone = pad_batch(encoded["dev"], rows[:1], config.pad_token_id)
    with torch.no_grad():
        together = model(padded["input_ids"], padded["token_type_ids"], padded["attention_mask"])
        single = model(alone["input_ids"], alone["token_type_ids"], alone["attention_mask"])
    # the shortest row padded beside a longer one gets the same logits as on its own
    torch.testing.assert_close(together.logits[:1], single.logits, rtol=1e-4, atol=1e-5)


def test_mean_pooling_is_refused_at_export_with_one_line():
    check_exportable("cls")
    with pytest.raises(BertforgeError, match=r"finetune.pooling 'mean' cannot be exported"):
        check_exportable("mean")


def test_an_unknown_pooling_is_a_one_line_params_error(project):
    with pytest.raises(BertforgeError, match=r"pooling must be one of 'cls', 'mean', got 'max'"):
        tiny_finetune_params(project[1], pooling="max")
