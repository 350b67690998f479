"""Continued pretraining (``pretrain.init_from``): start from a parent checkpoint's weights.

`check_parent` runs with the other input checks, before any worker starts: the parent must be a
BERT (config.json ``model_type`` bert or megatron-bert) of exactly the shape `pretrain.model`
names, with position embeddings for the examples' length, and its vocabulary must be the first
rows of data/tokenizer (the vocab stage's ``vocab.init_from``, possibly extended). Each rank then
calls `load_parent_weights` on the freshly initialised model: the weights of `BertForPreTraining`,
`BertForMaskedLM` or `BertModel` checkpoints (safetensors, or pytorch_model.bin read with
``weights_only=True``) are copied in bit-exactly; the heads the file lacks keep BERT's
initialisation and are reported; rows appended by ``vocab.extend_with`` start as the mean of the
parent rows that spelled them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from bertforge.errors import BertforgeError
from bertforge.model import BertConfig, BertForPreTraining
from bertforge.model.export import check_shapes
from bertforge.parent import Parent, ParentSpec, resolve_parent
from bertforge.tokenizer.files import TOKENIZER_FILE, VOCAB_FILE
from bertforge.vocab.extend import VocabExtension
from bertforge.vocab.parent import read_tokenizer_json, read_vocab_lines, wordpiece_tokens

PARAM = "pretrain.init_from"
CONFIG_FILE = "config.json"
# the weight files a transformers export may hold, in the order they are looked for
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# what must equal pretrain.model for the parent's weights to mean the same computation
ARCHITECTURE_KEYS = (
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "pre_layer_norm",
)
WORD_EMBEDDINGS = "bert.embeddings.word_embeddings.weight"
MLM_BIAS = "cls.predictions.bias"
REQUIRED_PREFIXES = ("bert.embeddings.", "bert.encoder.")


@dataclass(frozen=True)
class ParentWeights:
    """A checked parent: where its weights are and how its vocabulary maps onto ours."""

    parent: Parent
    weights_file: Path
    parent_vocab_size: int
    extension: VocabExtension | None

    @property
    def identity(self) -> dict[str, str]:
        return self.parent.identity


def check_parent(
    spec: ParentSpec, config: BertConfig, tokenizer_dir: Path, max_seq_length: int
) -> ParentWeights:
    """Resolve `pretrain.init_from` and check that its weights fit the model to train."""
    parent = resolve_parent(spec, PARAM)
    parent_config = read_parent_config(parent)
    if parent_config.max_position_embeddings < max_seq_length:
        raise BertforgeError(
            f"params.yaml: {PARAM}: the parent {parent.label} has max_position_embeddings "
            f"{parent_config.max_position_embeddings}, below the examples' max_seq_length "
            f"({max_seq_length}); lower examples.max_seq_length or choose another parent"
        )
    for key in ARCHITECTURE_KEYS:
        ours, theirs = getattr(config, key), getattr(parent_config, key)
        if ours != theirs:
            raise BertforgeError(
                f"params.yaml: pretrain.model.{key} is {ours!r}, but the parent {parent.label} "
                f"has {theirs!r} ({PARAM}); set it to the parent's"
            )
    extension = VocabExtension.read(tokenizer_dir)
    parent_vocab_size = extension.parent_vocab_size if extension else config.vocab_size
    if parent_config.vocab_size != parent_vocab_size:
        raise BertforgeError(
            f"{tokenizer_dir / VOCAB_FILE}: {parent_vocab_size} tokens from the parent, but the "
            f"parent {parent.label} has vocab_size {parent_config.vocab_size} ({PARAM}); make "
            "the vocabulary with vocab.init_from set to the same parent"
        )
    check_same_tokens(parent, tokenizer_dir, parent_vocab_size)
    return ParentWeights(parent, find_weights(parent), parent_vocab_size, extension)


def read_parent_config(parent: Parent) -> BertConfig:
    """The parent's config.json as a BertConfig; another architecture is a one-line error."""
    path = parent.directory / CONFIG_FILE
    try:
        hf = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BertforgeError(f"{PARAM}: {path}: not found (not a transformers model)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BertforgeError(f"{PARAM}: {path}: not readable JSON ({error})") from None
    model_type = hf.get("model_type")
    if model_type not in ("bert", "megatron-bert"):
        architectures = ", ".join(hf.get("architectures") or []) or "no architectures listed"
        raise BertforgeError(
            f"{PARAM}: {path}: model_type {model_type!r} ({architectures}), not BERT; only a "
            "'bert' or 'megatron-bert' checkpoint can be continued"
        )
    try:
        return BertConfig.from_hf_dict(hf)
    except BertforgeError as error:
        raise BertforgeError(f"{PARAM}: {path}: {error}") from None


def check_same_tokens(parent: Parent, tokenizer_dir: Path, parent_vocab_size: int) -> None:
    """The parent's rows mean data/tokenizer's first tokens, when the parent lists its tokens."""
    theirs = read_vocab_lines(parent.directory / VOCAB_FILE)
    if theirs is None:
        tokenizer = read_tokenizer_json(parent.directory / TOKENIZER_FILE, PARAM)
        if tokenizer is None:
            return  # a weights-only parent: its vocab_size was checked, its tokens cannot be
        theirs = wordpiece_tokens(tokenizer, parent.directory / TOKENIZER_FILE, PARAM)
    ours = read_vocab_lines(tokenizer_dir / VOCAB_FILE) or []
    first = ours[:parent_vocab_size]
    if first != theirs:
        index = next(
            (i for i, (a, b) in enumerate(zip(first, theirs, strict=False)) if a != b),
            min(len(first), len(theirs)),
        )
        raise BertforgeError(
            f"{tokenizer_dir / VOCAB_FILE}: differs from the parent {parent.label}'s vocabulary "
            f"at id {index}; make the vocabulary with vocab.init_from set to the same parent "
            f"({PARAM})"
        )


def find_weights(parent: Parent) -> Path:
    for name in WEIGHT_FILES:
        if (parent.directory / name).is_file():
            return parent.directory / name
    raise BertforgeError(f"{PARAM}: {parent.directory}: no weights ({', '.join(WEIGHT_FILES)})")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weight file (or of the shards a *.index.json lists), on CPU."""
    if path.name.endswith(".index.json"):
        index = json.loads(path.read_text(encoding="utf-8"))
        state: dict[str, torch.Tensor] = {}
        for shard in sorted(set(index.get("weight_map", {}).values())):
            state |= read_state_dict(path.parent / shard)
        return state
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        # weights_only: a pickle that is anything but tensors is refused, never executed
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # safetensors and torch raise assorted types on a bad file
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BertforgeError(f"{PARAM}: {path}: unreadable weights ({first_line})") from None


def canonical_name(name: str) -> str:
    """transformers' BERT parameter name for any of the layouts BERT checkpoints use."""
    # TF-converted checkpoints name LayerNorm's weight and bias gamma and beta
    name = name.replace("LayerNorm.gamma", "LayerNorm.weight").replace(
        "LayerNorm.beta", "LayerNorm.bias"
    )
    # a bare BertModel has no "bert." prefix
    if name.startswith(("embeddings.", "encoder.", "pooler.")):
        name = "bert." + name
    return name


def load_parent_weights(model: BertForPreTraining, parent: ParentWeights) -> dict[str, Any]:
    """Copy the parent's weights into `model` (freshly initialised); returns what was done.

    The report lists the parameters the file did not hold (a head, kept as initialised), the
    file's tensors the model has no use for, and how many vocabulary rows were added.
    """
    saved = {
        canonical_name(name): tensor
        for name, tensor in read_state_dict(parent.weights_file).items()
    }
    expected = {
        name: tensor
        for name, tensor in model.state_dict().items()
        if name not in model.tied_parameters
    }
    if parent.extension is not None:
        saved = grow_vocabulary(saved, parent.extension)
    check_shapes(saved, expected, f"{PARAM}: {parent.weights_file}", "pretrain.model")
    initialized = sorted(set(expected) - set(saved))
    required = [name for name in initialized if name.startswith(REQUIRED_PREFIXES)]
    if required:
        raise BertforgeError(
            f"{PARAM}: {parent.weights_file}: {required[0]} is missing ({len(required)} encoder "
            "or embedding tensors in all)"
        )
    unused = sorted(set(saved) - set(expected) - set(model.tied_parameters))
    with torch.no_grad():
        for name in sorted(set(expected) & set(saved)):
            expected[name].copy_(saved[name])  # bit-exact (a float32 parent)
    return {
        "parent": dict(parent.identity),
        "initialized": initialized,
        "unused": unused,
        "added_vocab_rows": len(parent.extension.added) if parent.extension else 0,
    }


def grow_vocabulary(
    saved: dict[str, torch.Tensor], extension: VocabExtension
) -> dict[str, torch.Tensor]:
    """The parent's word embeddings and MLM bias with a row per added piece, appended.

    The MLM decoder is tied to the word embeddings, so it grows with them. Each new row (and
    bias entry) starts as the mean over the parent pieces that spelled the new piece.
    """
    grown = dict(saved)
    for name in (WORD_EMBEDDINGS, MLM_BIAS):
        if name not in saved:
            continue
        rows = saved[name]
        if rows.shape[0] != extension.parent_vocab_size:
            raise BertforgeError(
                f"{PARAM}: {name} has {rows.shape[0]} rows, the parent vocabulary "
                f"{extension.parent_vocab_size} tokens"
            )
        # a new piece starts as the mean of the parent pieces that spelled it
        added = [rows[list(piece.parent_pieces)].float().mean(0) for piece in extension.added]
        grown[name] = torch.cat([rows, torch.stack(added).to(rows.dtype)]) if added else rows
    return grown
