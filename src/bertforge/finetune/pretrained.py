"""The pretrained export that fine-tuning starts from: checked, its tokenizer, its MLflow run.

A model is only meaningful with the vocabulary it was trained with, so `check_pretrained_export`
refuses an export whose config, vocab.txt, tokenizer.json and the pipeline's own vocabulary do
not agree, before any task is read.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer

from bertforge.errors import BertforgeError
from bertforge.io import read_json, sha256_file
from bertforge.model import CONFIG_FILE, WEIGHTS_FILE, BertConfig
from bertforge.tokenizer import TOKENIZER_FILE, VOCAB_FILE, load_tokenizer
from bertforge.tracking import PRETRAINED_WEIGHTS_TAG, TAG_PREFIX, newest_run_tagged

PRETRAIN_RUN_TAG = f"{TAG_PREFIX}pretrain_run_id"


def check_pretrained_export(
    model_dir: Path, reference_vocab: Path | None, max_seq_length: int
) -> BertConfig:
    """Check that the export's model, vocabulary and tokenizer belong together; its config.

    The vocabulary size in config.json must equal the number of tokens in vocab.txt and in
    tokenizer.json, vocab.txt must be the pipeline's own (`reference_vocab`,
    data/tokenizer/vocab.txt, when it exists), and tokenizer.json must add [CLS]/[SEP] itself.
    Each mismatch is a one-line error.
    """
    model_dir = Path(model_dir)
    config_path, vocab_path = model_dir / CONFIG_FILE, model_dir / VOCAB_FILE
    for path in (config_path, vocab_path, model_dir / TOKENIZER_FILE):
        if not path.is_file():
            raise BertforgeError(f"{path}: not found; run the pretrain stage first")
    hf_config = read_json(config_path, "pretrain")
    try:
        config = BertConfig.from_hf_dict(hf_config)
    except BertforgeError as error:
        raise BertforgeError(f"{config_path}: {error}") from None
    vocab_tokens = len(vocab_path.read_text(encoding="utf-8").splitlines())
    if vocab_tokens != config.vocab_size:
        raise BertforgeError(
            f"{config_path}: vocab_size {config.vocab_size} does not match {vocab_path} "
            f"({vocab_tokens} tokens): the model and its tokenizer do not belong together"
        )
    tokenizer = load_export_tokenizer(model_dir)
    if tokenizer.get_vocab_size() != config.vocab_size:
        raise BertforgeError(
            f"{model_dir / TOKENIZER_FILE}: {tokenizer.get_vocab_size()} tokens, but "
            f"{config_path} has vocab_size {config.vocab_size}"
        )
    reference = Path(reference_vocab) if reference_vocab is not None else None
    if reference and reference.is_file() and sha256_file(vocab_path) != sha256_file(reference):
        raise BertforgeError(
            f"{vocab_path} differs from {reference}: the pretrained model was trained "
            "with another vocabulary; re-run pretrain"
        )
    if max_seq_length > config.max_position_embeddings:
        raise BertforgeError(
            f"params.yaml: finetune.max_seq_length must be at most the model's "
            f"max_position_embeddings ({config.max_position_embeddings}), got {max_seq_length}"
        )
    return config


def load_export_tokenizer(model_dir: Path) -> Tokenizer:
    """The export's tokenizer, checked as `bertforge.tokenizer.load_tokenizer` checks
    data/tokenizer (vocab.txt agrees, special tokens present, a literal "[SEP]" in a text is
    text, as in the original BERT); it must also wrap inputs as [CLS] A [SEP] (B [SEP])."""
    tokenizer = load_tokenizer(model_dir)
    encoding = tokenizer.encode("a", "b")
    if encoding.tokens[:1] != ["[CLS]"] or encoding.tokens[-1:] != ["[SEP]"]:
        path = Path(model_dir) / TOKENIZER_FILE
        raise BertforgeError(f"{path}: its post-processor does not add [CLS] and [SEP]")
    return tokenizer


def pretrain_run_id(model_dir: Path) -> str | None:
    """The MLflow pretrain run that exported these weights, found by their sha256 (its tag).

    The export itself carries no run id, so that an identical re-run leaves it byte-identical
    and every stage after it cached.
    """
    weights = Path(model_dir) / WEIGHTS_FILE
    if not weights.is_file():
        return None
    return newest_run_tagged(PRETRAINED_WEIGHTS_TAG, sha256_file(weights))
