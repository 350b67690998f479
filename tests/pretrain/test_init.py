"""pretrain.init_from: a parent saved by transformers is loaded bit-exactly, the heads it lacks are
reported, vocabulary extension keeps every parent row, the continued export loads back into
transformers, and a parent that does not fit is one line naming the key."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import transformers

from bertforge.errors import BertforgeError
from bertforge.model import BertConfig, BertForPreTraining, save_pretrained
from bertforge.parent import ParentSpec
from bertforge.pretrain.init import check_parent, load_parent_weights
from bertforge.tokenizer.files import write_tokenizer
from bertforge.vocab.parent import load_parent_vocabulary, tokenizer_from_parent
from tests.continued import (
    DOMAIN_DOCUMENTS,
    TINY_SHAPE,
    parent_vocab_params,
    save_transformers_parent,
    write_foreign_config,
    write_parent_tokenizer,
)
from tests.factories import VOCAB_HELDOUT_DOCUMENTS, write_ingested

MAX_SEQ_LENGTH = 32
HEADS_OF = {
    "BertForMaskedLM": [
        "bert.pooler.dense.bias",
        "bert.pooler.dense.weight",
        "cls.seq_relationship.bias",
        "cls.seq_relationship.weight",
    ],
    "BertForPreTraining": [],
}


@pytest.fixture(scope="module")
def parent_tokens(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """Tokenizer files of a parent (our pipeline, general fixture documents)."""
    directory = tmp_path_factory.mktemp("parent-tokenizer")
    tokens = write_parent_tokenizer(directory, tmp_path_factory.mktemp("general"))
    return directory, tokens


def make_parent(tmp_path: Path, parent_tokens, architecture: str = "BertForMaskedLM", **kw):
    directory = tmp_path / "parent"
    shutil.copytree(parent_tokens[0], directory)
    model = save_transformers_parent(directory, len(parent_tokens[1]), architecture, **kw)
    return directory, model


def our_config(vocab_size: int, **shape: object) -> BertConfig:
    return BertConfig(vocab_size=vocab_size, **(TINY_SHAPE | shape))


def continued(
    directory: Path, tokenizer_dir: Path, vocab_size: int
) -> tuple[BertForPreTraining, dict]:
    parent = check_parent(
        ParentSpec(path=str(directory)), our_config(vocab_size), tokenizer_dir, MAX_SEQ_LENGTH
    )
    model = BertForPreTraining(our_config(vocab_size))
    return model, load_parent_weights(model, parent)


@pytest.mark.parametrize("architecture", ["BertForMaskedLM", "BertForPreTraining"])
def test_weights_saved_by_transformers_load_bit_exactly(
    tmp_path: Path, parent_tokens, architecture: str
) -> None:
    directory, reference = make_parent(tmp_path, parent_tokens, architecture)
    model, report = continued(directory, directory, len(parent_tokens[1]))
    ours = model.state_dict()
    for name, tensor in reference.state_dict().items():
        if name in ours:
            assert torch.equal(ours[name], tensor), name
    assert report["initialized"] == HEADS_OF[architecture]
    assert report["parent"]["path"] == str(directory)
    assert report["added_vocab_rows"] == 0


def test_a_bare_bert_model_in_pytorch_bin_loads_and_reports_every_head(
    tmp_path: Path, parent_tokens
) -> None:
    """BertModel's names have no ``bert.`` prefix; pytorch_model.bin is read with weights_only."""
    directory, reference = make_parent(
        tmp_path, parent_tokens, "BertModel", safe_serialization=False
    )
    assert (directory / "pytorch_model.bin").is_file()
    model, report = continued(directory, directory, len(parent_tokens[1]))
    embeddings = reference.embeddings.word_embeddings.weight
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, embeddings)
    assert torch.equal(model.bert.pooler.dense.weight, reference.pooler.dense.weight)
    assert "cls.predictions.transform.dense.weight" in report["initialized"]
    assert not any(name.startswith("bert.") for name in report["initialized"])


@pytest.mark.parametrize("model_type", ["roberta", "gpt2", "distilbert"])
def test_a_parent_of_another_architecture_is_refused(tmp_path: Path, model_type: str) -> None:
    directory = write_foreign_config(tmp_path / model_type, model_type)
    with pytest.raises(BertforgeError) as error:
        check_parent(ParentSpec(path=str(directory)), our_config(100), directory, MAX_SEQ_LENGTH)
    message = str(error.value)
    assert message.startswith(f"pretrain.init_from: {directory / 'config.json'}: model_type")
    assert f"'{model_type}'" in message and "\n" not in message


def test_a_shape_mismatch_names_the_key(tmp_path: Path, parent_tokens) -> None:
    directory, _ = make_parent(tmp_path, parent_tokens, intermediate_size=48)
    with pytest.raises(BertforgeError) as error:
        check_parent(
            ParentSpec(path=str(directory)),
            our_config(len(parent_tokens[1])),
            directory,
            MAX_SEQ_LENGTH,
        )
    assert str(error.value).startswith(
        "params.yaml: pretrain.model.intermediate_size is 64, but the parent"
    )


def test_a_parent_with_fewer_positions_than_the_examples_is_refused(
    tmp_path: Path, parent_tokens
) -> None:
    directory, _ = make_parent(tmp_path, parent_tokens, max_position_embeddings=16)
    with pytest.raises(BertforgeError, match=r"has max_position_embeddings 16, below the exam"):
        check_parent(
            ParentSpec(path=str(directory)),
            our_config(len(parent_tokens[1])),
            directory,
            MAX_SEQ_LENGTH,
        )


def test_a_missing_directory_names_the_param(tmp_path: Path) -> None:
    with pytest.raises(BertforgeError) as error:
        check_parent(ParentSpec(path=str(tmp_path / "gone")), our_config(100), tmp_path, 32)
    assert str(error.value) == (
        f"params.yaml: pretrain.init_from.path {tmp_path / 'gone'}: directory not found"
    )


def test_a_vocabulary_not_made_from_the_parent_is_refused(tmp_path: Path, parent_tokens) -> None:
    directory, _ = make_parent(tmp_path, parent_tokens)
    other = tmp_path / "other-tokenizer"
    other.mkdir()
    tokens = list(parent_tokens[1])
    tokens[10], tokens[11] = tokens[11], tokens[10]
    (other / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    with pytest.raises(BertforgeError, match=r"differs from the parent .* at id 10"):
        check_parent(ParentSpec(path=str(directory)), our_config(len(tokens)), other, 32)


@pytest.fixture(scope="module")
def extended(tmp_path_factory: pytest.TempPathFactory, parent_tokens):
    """A parent (BertForMaskedLM, transformers) and data/tokenizer extended with 6 domain pieces."""
    root = tmp_path_factory.mktemp("extended")
    directory, reference = make_parent(root, parent_tokens)
    train = write_ingested(root / "domain", DOMAIN_DOCUMENTS, VOCAB_HELDOUT_DOCUMENTS)
    params = parent_vocab_params(
        init_from=ParentSpec(path=str(directory)), extend_with=6, min_frequency=2
    )
    tokenizer, extension = tokenizer_from_parent(
        load_parent_vocabulary(params), train / "data/ingested/train", params
    )
    tokenizer_dir = root / "tokenizer"
    tokenizer_dir.mkdir()
    write_tokenizer(tokenizer, tokenizer_dir, params)
    extension.write(tokenizer_dir)
    model, report = continued(directory, tokenizer_dir, len(parent_tokens[1]) + 6)
    return reference, model, report, extension, tokenizer_dir


def test_extension_keeps_every_parent_row_and_starts_new_rows_at_their_pieces_mean(
    extended, parent_tokens
) -> None:
    reference, model, report, extension, _ = extended
    parent_size = len(parent_tokens[1])
    ours = model.bert.embeddings.word_embeddings.weight
    theirs = reference.bert.embeddings.word_embeddings.weight
    assert report["added_vocab_rows"] == 6 and ours.shape[0] == parent_size + 6
    assert torch.equal(ours[:parent_size], theirs)
    bias = model.cls.predictions.bias
    assert torch.equal(bias[:parent_size], reference.cls.predictions.bias)
    for piece in extension.added:
        pieces = list(piece.parent_pieces)
        torch.testing.assert_close(ours[piece.id], theirs[pieces].mean(0), rtol=0, atol=1e-7)
        torch.testing.assert_close(
            bias[piece.id], reference.cls.predictions.bias[pieces].mean(0), rtol=0, atol=1e-7
        )
    # the MLM decoder is tied to the embeddings: it grew with them
    assert model.cls.predictions.decoder.weight.data_ptr() == ours.data_ptr()


def test_the_continued_export_loads_in_transformers_and_fills_masks(extended, tmp_path) -> None:
    _, model, _, extension, tokenizer_dir = extended
    export = tmp_path / "model"
    save_pretrained(model, export)
    for path in tokenizer_dir.iterdir():
        shutil.copy(path, export / path.name)
    loaded = transformers.BertForMaskedLM.from_pretrained(export).eval()
    assert torch.equal(
        loaded.bert.embeddings.word_embeddings.weight, model.bert.embeddings.word_embeddings.weight
    )
    fill = transformers.pipeline("fill-mask", model=str(export), tokenizer=str(export))
    word = extension.added[0].token
    answers = fill(f"the {word} and the [MASK] work together.", top_k=3)
    assert len(answers) == 3 and all("[MASK]" not in answer["sequence"] for answer in answers)
    assert fill.tokenizer.convert_tokens_to_ids(word) == extension.added[0].id
