"""The pretrained export: model, vocabulary and tokenizer checked together; its lineage."""

from __future__ import annotations

import json

import pytest

from bertforge.errors import BertforgeError
from bertforge.finetune.pretrained import check_pretrained_export, pretrain_run_id
from tests.factories import make_tiny_export, tag_pretrain_run


def test_export_check_accepts_a_matching_model_and_tokenizer(export):
    config = check_pretrained_export(export, export / "vocab.txt", 32)
    assert config.vocab_size == len((export / "vocab.txt").read_text().splitlines())


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


def test_pretrain_run_is_found_by_the_weights_it_exported_not_by_an_id_in_the_export(export):
    assert pretrain_run_id(export) is None  # no run exported these weights
    run_id = tag_pretrain_run(export)
    assert pretrain_run_id(export) == run_id
