"""Exports: transformers loads ours with no missing or unexpected keys; we load ours and theirs."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
import transformers

from bertforge.errors import BertforgeError
from bertforge.model import (
    BertForPreTraining,
    BertForSequenceClassification,
    load_pretrained,
    save_pretrained,
)
from tests.model.factories import (
    REFERENCE_CLASSES,
    TINY,
    TOLERANCE,
    encoder_inputs,
    pretraining_batch,
    randomized,
    real_tokens,
)


@pytest.mark.parametrize("pre_layer_norm", [False, True], ids=["bert", "pre-ln=megatron-bert"])
def test_transformers_loads_our_pretraining_export_with_no_missing_or_unexpected_keys(
    tmp_path, pre_layer_norm
):
    ours = randomized(BertForPreTraining(dataclasses.replace(TINY, pre_layer_norm=pre_layer_norm)))
    save_pretrained(ours, tmp_path)
    loaded, info = transformers.AutoModelForPreTraining.from_pretrained(
        tmp_path, output_loading_info=True
    )
    assert type(loaded) is REFERENCE_CLASSES[pre_layer_norm][0]
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert not info["mismatched_keys"]
    batch = pretraining_batch()
    with torch.no_grad():
        ours_logits = ours.prediction_logits(**encoder_inputs(batch))
        hf_logits = loaded.eval()(**encoder_inputs(batch)).prediction_logits
    mask = real_tokens(batch)
    torch.testing.assert_close(ours_logits[mask], hf_logits[mask], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("num_labels", [3, 1], ids=["classification", "regression"])
def test_transformers_loads_our_classifier_export_with_no_missing_or_unexpected_keys(
    tmp_path, num_labels
):
    names = ["entailment", "neutral", "contradiction"][:num_labels] if num_labels > 1 else None
    ours = randomized(BertForSequenceClassification(TINY, num_labels, names))
    save_pretrained(ours, tmp_path)
    loaded, info = transformers.AutoModelForSequenceClassification.from_pretrained(
        tmp_path, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert loaded.config.num_labels == num_labels
    if names:
        assert loaded.config.id2label == dict(enumerate(names))
    assert loaded.config.problem_type == (
        "regression" if num_labels == 1 else "single_label_classification"
    )
    batch = encoder_inputs(pretraining_batch())
    with torch.no_grad():
        torch.testing.assert_close(
            ours(**batch).logits, loaded.eval()(**batch).logits, atol=TOLERANCE, rtol=0
        )


def test_export_writes_tied_decoder_once_and_round_trips(tmp_path):
    ours = randomized(BertForPreTraining(TINY))
    save_pretrained(ours, tmp_path)
    from safetensors import safe_open

    with safe_open(tmp_path / "model.safetensors", "pt") as saved:
        names = set(saved.keys())
        assert {saved.get_tensor(name).dtype for name in names} == {torch.float32}
    assert "cls.predictions.decoder.weight" not in names
    assert "cls.predictions.decoder.bias" not in names
    assert names == set(ours.state_dict()) - set(BertForPreTraining.tied_parameters)
    loaded, report = load_pretrained(tmp_path, BertForPreTraining)
    assert report.initialized == [] and report.unused == []
    assert loaded.cls.predictions.decoder.weight is loaded.bert.embeddings.word_embeddings.weight
    assert loaded.cls.predictions.decoder.bias is loaded.cls.predictions.bias
    for name, tensor in ours.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    assert loaded.config == ours.config


def test_export_is_byte_identical_for_identical_weights(tmp_path):
    ours = randomized(BertForPreTraining(TINY))
    save_pretrained(ours, tmp_path / "a")
    save_pretrained(copy.deepcopy(ours), tmp_path / "b")
    for name in ("config.json", "model.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_classifier_from_pretraining_export_keeps_encoder_and_initializes_only_the_head(tmp_path):
    pretrained = randomized(BertForPreTraining(TINY))
    save_pretrained(pretrained, tmp_path)
    classifier, report = load_pretrained(tmp_path, BertForSequenceClassification, num_labels=2)
    assert report.initialized == ["classifier.bias", "classifier.weight"]
    assert report.unused == sorted(
        name
        for name in pretrained.state_dict()
        if name.startswith("cls.") and name not in BertForPreTraining.tied_parameters
    )
    for name, tensor in classifier.state_dict().items():
        if name.startswith("bert."):
            assert torch.equal(tensor, pretrained.state_dict()[name]), name
    assert torch.equal(classifier.classifier.bias, torch.zeros(2))


def test_classifier_export_reloads_with_its_own_labels(tmp_path):
    ours = randomized(BertForSequenceClassification(TINY, 2, ["negative", "positive"]))
    save_pretrained(ours, tmp_path)
    loaded, report = load_pretrained(tmp_path, BertForSequenceClassification)
    assert loaded.num_labels == 2 and loaded.label_names == ("negative", "positive")
    assert report.initialized == [] and report.unused == []


def test_classifier_from_pretraining_export_without_num_labels_is_an_error(tmp_path):
    save_pretrained(BertForPreTraining(TINY), tmp_path)
    with pytest.raises(BertforgeError, match=r"config.json: has no classification head"):
        load_pretrained(tmp_path, BertForSequenceClassification)


def test_export_missing_an_encoder_weight_is_an_error_naming_it(tmp_path):
    from safetensors.torch import load_file, save_file

    save_pretrained(BertForPreTraining(TINY), tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    del weights["bert.encoder.layer.1.output.dense.weight"]
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(
        BertforgeError, match=r"bert.encoder.layer.1.output.dense.weight is missing"
    ):
        load_pretrained(tmp_path, BertForPreTraining)


def test_export_of_another_architecture_is_an_error_naming_the_file(tmp_path):
    save_pretrained(BertForPreTraining(TINY), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"model_type": "roberta"}))
    with pytest.raises(BertforgeError, match=r"config.json: model_type must be 'bert'"):
        load_pretrained(tmp_path, BertForPreTraining)
