"""bertforge.model against transformers' BERT: same names, same numbers, loadable exports."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
import transformers

from bertforge.errors import BertforgeError
from bertforge.model import (
    IGNORE_INDEX,
    BertConfig,
    BertForPreTraining,
    BertForSequenceClassification,
    flops_per_token,
    load_pretrained,
    optimizer_parameter_groups,
    save_pretrained,
)

TINY = BertConfig(
    vocab_size=97,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=64,
    max_position_embeddings=48,
)
LENGTHS = [20, 13, 6]  # a padded batch: each row a different real length
PREDICTIONS = [3, 2, 1]  # masked positions per row; the rest of the [B, P] slots are padding
TOLERANCE = 1e-5
REFERENCE_CLASSES = {
    False: (transformers.BertForPreTraining, transformers.BertForSequenceClassification),
    True: (
        transformers.MegatronBertForPreTraining,
        transformers.MegatronBertForSequenceClassification,
    ),
}


def randomized(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random (biases and LayerNorms too, so a miswired one shows), eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    return model.eval()


def reference_for(model: torch.nn.Module, head: int) -> torch.nn.Module:
    """transformers' model of the same architecture holding our weights (strict load)."""
    config = model.config
    reference_cls = REFERENCE_CLASSES[config.pre_layer_norm][head]
    hf_config = reference_cls.config_class.from_dict(model.hf_config())
    reference = reference_cls(hf_config).eval()
    reference.load_state_dict(model.state_dict(), strict=True)
    return reference


def pretraining_batch(seed: int = 1) -> dict[str, torch.Tensor]:
    """Rows of different lengths, two segments each, masked positions padded with 0/-100."""
    generator = torch.Generator().manual_seed(seed)
    shape = (len(LENGTHS), max(LENGTHS))
    input_ids = torch.randint(5, TINY.vocab_size, shape, generator=generator)
    token_type_ids = torch.zeros_like(input_ids)
    attention_mask = torch.zeros_like(input_ids)
    positions = torch.zeros(len(LENGTHS), max(PREDICTIONS), dtype=torch.long)
    ids = torch.full_like(positions, IGNORE_INDEX)
    for row, (real, predicted) in enumerate(zip(LENGTHS, PREDICTIONS, strict=True)):
        input_ids[row, real:] = 0
        token_type_ids[row, real // 2 : real] = 1
        attention_mask[row, :real] = 1
        chosen = torch.randperm(real - 1, generator=generator)[:predicted] + 1
        positions[row, :predicted] = chosen
        ids[row, :predicted] = torch.randint(5, TINY.vocab_size, (predicted,), generator=generator)
    return {
        "input_ids": input_ids,
        "token_type_ids": token_type_ids,
        "attention_mask": attention_mask,
        "masked_lm_positions": positions,
        "masked_lm_ids": ids,
        "next_sentence_label": torch.tensor([0, 1, -1]),
    }


def encoder_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: batch[key] for key in ("input_ids", "token_type_ids", "attention_mask")}


def dense_mlm_labels(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """transformers' MLM labels: the target id at masked positions, -100 everywhere else."""
    labels = torch.full_like(batch["input_ids"], IGNORE_INDEX)
    valid = batch["masked_lm_ids"] != IGNORE_INDEX
    rows = torch.arange(len(labels))[:, None].expand_as(valid)
    labels[rows[valid], batch["masked_lm_positions"][valid]] = batch["masked_lm_ids"][valid]
    return labels


def real_tokens(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return batch["attention_mask"].bool()


@pytest.mark.parametrize("pre_layer_norm", [False, True], ids=["bert", "pre-ln=megatron-bert"])
def test_mlm_and_nsp_logits_equal_transformers(pre_layer_norm):
    config = dataclasses.replace(TINY, pre_layer_norm=pre_layer_norm)
    ours = randomized(BertForPreTraining(config))
    reference = reference_for(ours, head=0)
    batch = pretraining_batch()
    with torch.no_grad():
        output = ours(**batch)
        dense = ours.prediction_logits(**encoder_inputs(batch))
        expected = reference(**encoder_inputs(batch))
    rows = torch.arange(len(LENGTHS))[:, None]
    expected_at_masked = expected.prediction_logits[rows, batch["masked_lm_positions"]]
    torch.testing.assert_close(output.mlm_logits, expected_at_masked, atol=TOLERANCE, rtol=0)
    mask = real_tokens(batch)
    torch.testing.assert_close(
        dense[mask], expected.prediction_logits[mask], atol=TOLERANCE, rtol=0
    )
    torch.testing.assert_close(
        output.nsp_logits, expected.seq_relationship_logits, atol=TOLERANCE, rtol=0
    )


def test_pre_layer_norm_runs_and_differs_from_post_layer_norm():
    post = randomized(BertForPreTraining(TINY))
    pre = BertForPreTraining(dataclasses.replace(TINY, pre_layer_norm=True)).eval()
    pre.load_state_dict(post.state_dict(), strict=False)
    batch = pretraining_batch()
    with torch.no_grad():
        difference = (pre(**batch).mlm_logits - post(**batch).mlm_logits).abs().max()
    assert difference > 1e-2
    assert "bert.encoder.ln.weight" in pre.state_dict()
    assert "bert.embeddings.LayerNorm.weight" not in pre.state_dict()


def test_loss_matches_transformers():
    ours = randomized(BertForPreTraining(TINY))
    reference = reference_for(ours, head=0)
    batch = pretraining_batch()
    nsp_labels = batch["next_sentence_label"]
    with torch.no_grad():
        output = ours(**batch)
        expected = reference(
            **encoder_inputs(batch),
            labels=dense_mlm_labels(batch),
            next_sentence_label=torch.where(nsp_labels < 0, IGNORE_INDEX, nsp_labels),
        )
    torch.testing.assert_close(output.loss, expected.loss, atol=TOLERANCE, rtol=0)
    loss = torch.nn.functional.cross_entropy
    nsp_labelled = nsp_labels >= 0
    expected_nsp = loss(expected.seq_relationship_logits[nsp_labelled], nsp_labels[nsp_labelled])
    torch.testing.assert_close(output.nsp_loss, expected_nsp, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(
        output.mlm_loss, expected.loss - expected_nsp, atol=TOLERANCE, rtol=0
    )


def test_accuracy_counts_cover_labelled_positions_only():
    ours = randomized(BertForPreTraining(TINY))
    batch = pretraining_batch()
    with torch.no_grad():
        output = ours(**batch)
    labelled = batch["masked_lm_ids"] != IGNORE_INDEX
    hits = output.mlm_logits.argmax(-1) == batch["masked_lm_ids"]
    assert output.mlm_total.item() == sum(PREDICTIONS)
    assert output.mlm_correct.item() == (hits & labelled).sum().item()
    nsp_hits = output.nsp_logits.argmax(-1)[:2] == batch["next_sentence_label"][:2]
    assert output.nsp_total.item() == 2
    assert output.nsp_correct.item() == nsp_hits.sum().item()


def test_batch_without_nsp_labels_gives_zero_nsp_loss_not_nan():
    ours = randomized(BertForPreTraining(TINY))
    batch = pretraining_batch() | {"next_sentence_label": torch.tensor([-1, -1, -100])}
    output = ours(**batch)
    assert output.nsp_loss.item() == 0 and output.nsp_total.item() == 0
    assert torch.isfinite(output.loss) and output.loss.item() == output.mlm_loss.item()


@pytest.mark.parametrize("num_labels", [3, 1], ids=["classification", "regression"])
def test_sequence_classification_logits_and_loss_equal_transformers(num_labels):
    ours = randomized(BertForSequenceClassification(TINY, num_labels))
    reference = reference_for(ours, head=1)
    batch = encoder_inputs(pretraining_batch())
    labels = torch.tensor([2, 0, 1]) if num_labels > 1 else torch.tensor([0.5, -1.0, 2.0])
    with torch.no_grad():
        output = ours(**batch, labels=labels)
        expected = reference(**batch, labels=labels)
    torch.testing.assert_close(output.logits, expected.logits, atol=TOLERANCE, rtol=0)
    torch.testing.assert_close(output.loss, expected.loss, atol=TOLERANCE, rtol=0)


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


def test_config_round_trips_through_transformers_config():
    for config in (TINY, dataclasses.replace(TINY, pre_layer_norm=True, pad_token_id=3)):
        hf_config = transformers.AutoConfig.for_model(**config.to_hf_dict())
        assert BertConfig.from_hf_dict(hf_config.to_dict()) == config


def test_config_with_hidden_size_not_divisible_by_heads_is_an_error():
    with pytest.raises(BertforgeError, match=r"^hidden_size must be a multiple of num_attention"):
        dataclasses.replace(TINY, hidden_size=30)


def test_padding_does_not_change_outputs_of_real_tokens():
    ours = randomized(BertForPreTraining(TINY))
    batch = pretraining_batch()
    extra = 9
    padded = {
        key: torch.nn.functional.pad(batch[key], (0, extra), value=7 if key == "input_ids" else 0)
        if key in ("input_ids", "token_type_ids", "attention_mask")
        else batch[key]
        for key in batch
    }  # padding ids 7, not even [PAD]: the mask alone must keep padding out
    with torch.no_grad():
        output, padded_output = ours(**batch), ours(**padded)
        states, _ = ours.bert(**encoder_inputs(batch))
        padded_states, _ = ours.bert(**encoder_inputs(padded))
    mask = real_tokens(batch)
    padded_mask = real_tokens(padded)
    torch.testing.assert_close(padded_states[padded_mask], states[mask], atol=TOLERANCE, rtol=0)
    for field in ("mlm_logits", "nsp_logits", "loss"):
        torch.testing.assert_close(
            getattr(padded_output, field), getattr(output, field), atol=TOLERANCE, rtol=0
        )


def test_tied_embedding_gets_gradient_from_both_decoder_and_embedding_lookup():
    tied = randomized(BertForPreTraining(TINY)).train()
    assert tied.cls.predictions.decoder.weight is tied.bert.embeddings.word_embeddings.weight
    untied = copy.deepcopy(tied)
    untied.cls.predictions.decoder.weight = torch.nn.Parameter(
        tied.bert.embeddings.word_embeddings.weight.detach().clone()
    )
    batch = pretraining_batch()
    for model in (tied, untied):
        torch.manual_seed(0)  # same dropout masks
        model(**batch).loss.backward()
    from_lookup = untied.bert.embeddings.word_embeddings.weight.grad
    from_decoder = untied.cls.predictions.decoder.weight.grad
    assert from_lookup.abs().sum() > 0 and from_decoder.abs().sum() > 0
    torch.testing.assert_close(
        tied.bert.embeddings.word_embeddings.weight.grad, from_lookup + from_decoder
    )


def test_initialization_is_berts():
    model = BertForPreTraining(dataclasses.replace(TINY, vocab_size=2000, hidden_size=64))
    state = model.state_dict()
    embedding = state["bert.embeddings.word_embeddings.weight"]
    assert torch.equal(embedding[0], torch.zeros(64))  # [PAD] row
    assert abs(embedding[1:].std().item() - 0.02) < 0.001
    assert abs(state["bert.encoder.layer.0.intermediate.dense.weight"].std().item() - 0.02) < 0.002
    assert torch.equal(state["bert.encoder.layer.0.attention.self.query.bias"], torch.zeros(64))
    assert torch.equal(state["cls.predictions.bias"], torch.zeros(2000))
    assert torch.equal(state["bert.encoder.layer.1.output.LayerNorm.weight"], torch.ones(64))


def test_initial_weights_are_a_function_of_the_generator_seed():
    def weights(seed: int) -> dict[str, torch.Tensor]:
        return BertForPreTraining(TINY, torch.Generator().manual_seed(seed)).state_dict()

    first, again, other = weights(1), weights(1), weights(2)
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert not torch.equal(
        first["bert.encoder.layer.0.attention.self.key.weight"],
        other["bert.encoder.layer.0.attention.self.key.weight"],
    )


def test_bf16_autocast_training_step_is_finite_and_close_to_fp32():
    ours = randomized(BertForPreTraining(TINY))
    batch = pretraining_batch()
    with torch.no_grad():
        fp32_loss = ours(**batch).loss
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = ours(**batch)
    output.loss.backward()
    assert output.loss.dtype == torch.float32
    assert abs(output.loss.item() - fp32_loss.item()) < 0.05 * fp32_loss.item()
    assert all(torch.isfinite(p.grad).all() for p in ours.parameters() if p.grad is not None)


def test_pretraining_step_compiles_as_one_graph():
    torch._dynamo.reset()
    compiled = torch.compile(BertForPreTraining(TINY), backend="eager", fullgraph=True)
    compiled(**pretraining_batch()).loss.backward()


@pytest.mark.parametrize("pre_layer_norm", [False, True], ids=["bert", "pre-ln"])
def test_weight_decay_skips_biases_and_layer_norms_and_covers_each_parameter_once(
    pre_layer_norm,
):
    model = BertForPreTraining(dataclasses.replace(TINY, pre_layer_norm=pre_layer_norm))
    decayed, not_decayed = optimizer_parameter_groups(model, weight_decay=0.01)
    assert decayed["weight_decay"] == 0.01 and not_decayed["weight_decay"] == 0.0
    names = {id(p): name for name, p in model.named_parameters()}
    decayed_names = {names[id(p)] for p in decayed["params"]}
    assert len(decayed["params"]) + len(not_decayed["params"]) == len(names)
    assert "bert.embeddings.word_embeddings.weight" in decayed_names
    assert "bert.encoder.layer.0.attention.self.query.weight" in decayed_names
    assert all(not name.endswith("bias") for name in decayed_names)
    assert all(p.dim() == 2 for p in decayed["params"])  # LayerNorm weights are 1-D


def test_flops_per_token_counts_six_flops_per_matmul_weight_plus_attention():
    model = BertForPreTraining(TINY)
    encoder_weights = sum(
        module.weight.numel()
        for module in model.bert.encoder.modules()
        if isinstance(module, torch.nn.Linear)
    )
    head = model.cls.predictions
    head_weights = head.transform.dense.weight.numel() + head.decoder.weight.numel()
    pooled_weights = (
        model.bert.pooler.dense.weight.numel() + model.cls.seq_relationship.weight.numel()
    )
    seq_len, fraction = 64, 0.15
    expected = (
        6 * encoder_weights
        + 12 * TINY.num_hidden_layers * TINY.hidden_size * seq_len
        + 6 * head_weights * fraction
        + 6 * pooled_weights / seq_len
    )
    assert flops_per_token(TINY, seq_len, fraction) == pytest.approx(expected)
