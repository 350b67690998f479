"""Parent checkpoints made on disk for the continued-pretraining tests (no network).

A parent is what a user downloads: a directory in transformers' layout, its weights saved by
transformers itself (`BertForMaskedLM.save_pretrained` and friends) and its tokenizer files (a
small WordPiece vocabulary trained by our pipeline, or by HF `tokenizers`' BertWordPieceTokenizer).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import transformers

from tests.factories import (
    VOCAB_HELDOUT_DOCUMENTS,
    VOCAB_TRAIN_DOCUMENTS,
    vocab_params,
    write_ingested,
    write_trained_tokenizer,
)

TINY_SHAPE = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}
PARENT_VOCAB = {"vocab_size": 260, "limit_alphabet": 200}
# a domain the parent vocabulary has never seen: its words come back often enough to be learned
DOMAIN_WORDS = ["photosynthesis", "chlorophyll", "stomata", "xylem", "phloem", "mitochondria"]
DOMAIN_DOCUMENTS = [
    [
        f"The {a} and the {b} work together in the leaf.",
        f"Without {b} there is no {a}, and the {a} fails.",
    ]
    for a in DOMAIN_WORDS
    for b in DOMAIN_WORDS
    if a != b
]


def parent_vocab_params(**overrides: object):
    return vocab_params(**(PARENT_VOCAB | overrides))


def write_parent_tokenizer(directory: Path, work: Path, **overrides: object) -> list[str]:
    """Our tokenizer files, trained on the general fixture documents; returns the tokens."""
    write_ingested(work, VOCAB_TRAIN_DOCUMENTS, VOCAB_HELDOUT_DOCUMENTS)
    write_trained_tokenizer(
        directory, work / "data/ingested/train", parent_vocab_params(**overrides)
    )
    return (directory / "vocab.txt").read_text(encoding="utf-8").splitlines()


def save_transformers_parent(
    directory: Path,
    vocab_size: int,
    architecture: str = "BertForMaskedLM",
    seed: int = 0,
    safe_serialization: bool = True,
    **shape: object,
) -> torch.nn.Module:
    """Weights saved by transformers itself (float32), with random but seeded values."""
    config = transformers.BertConfig(vocab_size=vocab_size, **(TINY_SHAPE | shape))
    torch.manual_seed(seed)
    model = getattr(transformers, architecture)(config).eval()
    model.save_pretrained(directory)
    if not safe_serialization:  # pytorch_model.bin, as transformers 4 and older wrote it
        torch.save(model.state_dict(), directory / "pytorch_model.bin")
        (directory / "model.safetensors").unlink()
    return model


def make_parent(directory: Path, work: Path, architecture: str = "BertForMaskedLM") -> Path:
    """A complete parent: tokenizer files and transformers-saved weights of that vocabulary."""
    tokens = write_parent_tokenizer(directory, work)
    save_transformers_parent(directory, len(tokens), architecture)
    return directory


def write_foreign_config(directory: Path, model_type: str) -> Path:
    """A config.json of another architecture (RoBERTa, GPT-2, DistilBERT), as transformers
    writes it."""
    configs = {
        "roberta": transformers.RobertaConfig,
        "gpt2": transformers.GPT2Config,
        "distilbert": transformers.DistilBertConfig,
    }
    directory.mkdir(parents=True, exist_ok=True)
    configs[model_type]().save_pretrained(directory)
    assert json.loads((directory / "config.json").read_text())["model_type"] == model_type
    return directory
