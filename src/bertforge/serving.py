"""The bertforge MLflow model, logged *from code*: this file is the model's definition.

`bertforge.registry.register` logs it with ``mlflow.pyfunc.log_model(python_model=<this file>,
artifacts={"model": <HF-format model directory>}, model_config={...})``. MLflow copies the file
into the logged model and runs it on load; it ends with ``set_model(BertforgeModel())``. No
Python object is pickled: the weights are the directory's safetensors, the behaviour is this
code, and ``model_config`` says which of three things the model does:

* ``fill-mask`` (the pretrained encoder): column ``text`` with exactly one ``[MASK]`` in;
  ``tokens`` and ``scores`` (the `top_k` most likely tokens for the mask, special tokens
  excluded, most likely first) and ``sequence`` (the text with the best token filled in) out.
  ``top_k`` is a model parameter (``params={"top_k": 3}``, or ``"params"`` in a REST request).
* ``classification``: ``text`` (and ``text_pair`` for a pair task) in; ``label``, its
  probability ``score`` and ``scores`` (every label's probability) out.
* ``regression``: the same inputs; ``value`` out.

A request with no rows, a ``text`` (or ``text_pair``) that is not a string (null, a number, an
object), or a ``top_k`` outside 1..the vocabulary size is refused with a 400 naming the field.

Texts are tokenized with the model directory's ``tokenizer.json`` exactly as in fine-tuning
(`bertforge.finetune.pretrained.load_export_tokenizer`: ``[CLS] a [SEP] b [SEP]``, segment ids
0/1, longest-first truncation to ``max_length`` tokens, the fine-tuning ``max_seq_length``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

MODEL_ARTIFACT = "model"
KINDS = ("fill-mask", "classification", "regression")
BATCH_SIZE = 32


class BertforgeModel(PythonModel):
    """Fill-mask, classification or regression with a bertforge BERT export."""

    def load_context(self, context: Any) -> None:
        from bertforge.finetune.pretrained import load_export_tokenizer
        from bertforge.model import (
            BertForPreTraining,
            BertForSequenceClassification,
            load_pretrained,
        )

        config = dict(context.model_config or {})
        self.kind = config.get("kind")
        if self.kind not in KINDS:
            raise MlflowException(f"model_config kind must be one of {KINDS}, got {self.kind!r}")
        self.top_k = int(config.get("top_k", 5))
        self.mask_token = str(config.get("mask_token", "[MASK]"))
        directory = Path(context.artifacts[MODEL_ARTIFACT])
        model_cls = (
            BertForPreTraining if self.kind == "fill-mask" else BertForSequenceClassification
        )
        self.model, report = load_pretrained(directory, model_cls)
        used_heads = ("cls.predictions.",) if self.kind == "fill-mask" else ("classifier.", "bert.")
        missing = [name for name in report.initialized if name.startswith(used_heads)]
        if missing:
            raise MlflowException(f"{directory}: {missing[0]} is missing from the weights")
        self.model.eval()
        self.tokenizer = load_export_tokenizer(directory)
        # fill-mask: the caller's "[MASK]" is the mask token; classification and regression read
        # a literal "[SEP]" (or any special-token string) as text, as fine-tuning did
        self.tokenizer.encode_special_tokens = self.kind != "fill-mask"
        max_length = int(config.get("max_length") or self.model.config.max_position_embeddings)
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.no_padding()
        self.pad_id = self.model.config.pad_token_id

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        frame = pd.DataFrame(model_input)
        if "text" not in frame.columns:
            raise MlflowException.invalid_parameter_value(
                "input is empty: send at least one row with a 'text' field"
                if frame.empty
                else "input needs a 'text' column"
            )
        if len(frame) == 0:
            raise MlflowException.invalid_parameter_value(
                "input has no rows: send at least one 'text'"
            )
        texts = checked_strings(frame["text"], "text")
        pairs = checked_strings(frame["text_pair"], "text_pair") if "text_pair" in frame else None
        top_k = self._checked_top_k(params) if self.kind == "fill-mask" else 0
        rows: list[dict[str, Any]] = []
        for start in range(0, len(texts), BATCH_SIZE):
            batch = texts[start : start + BATCH_SIZE]
            batch_pairs = pairs[start : start + BATCH_SIZE] if pairs is not None else None
            if self.kind == "fill-mask":
                rows.extend(self._fill_mask(batch, top_k))
            else:
                rows.extend(self._classify(batch, batch_pairs))
        return pd.DataFrame(rows, columns=self._output_columns())

    def _checked_top_k(self, params: dict[str, Any] | None) -> int:
        """The request's `top_k` (the model's default when absent), an integer in 1..vocabulary."""
        top_k = (params or {}).get("top_k")
        if top_k is None:
            top_k = self.top_k
        if isinstance(top_k, bool) or not isinstance(top_k, int | np.integer):
            raise MlflowException.invalid_parameter_value(
                f"params 'top_k' must be an integer, got {top_k!r}"
            )
        vocabulary = int(self.model.config.vocab_size)
        if not 1 <= top_k <= vocabulary:
            raise MlflowException.invalid_parameter_value(
                f"params 'top_k' must be between 1 and {vocabulary} (the vocabulary size), "
                f"got {int(top_k)}"
            )
        return int(top_k)

    def _output_columns(self) -> list[str]:
        return {
            "fill-mask": ["tokens", "scores", "sequence"],
            "classification": ["label", "score", "scores"],
            "regression": ["value"],
        }[self.kind]

    def _encode(
        self, texts: list[str], pairs: list[str] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """input_ids, token_type_ids and attention_mask [B, T], padded to the longest row."""
        inputs = texts if pairs is None else list(zip(texts, pairs, strict=True))
        encodings = self.tokenizer.encode_batch(inputs)
        length = max(len(encoding.ids) for encoding in encodings)
        input_ids = torch.full((len(encodings), length), self.pad_id, dtype=torch.long)
        token_type_ids = torch.zeros((len(encodings), length), dtype=torch.long)
        attention_mask = torch.zeros((len(encodings), length), dtype=torch.long)
        for row, encoding in enumerate(encodings):
            size = len(encoding.ids)
            input_ids[row, :size] = torch.tensor(encoding.ids)
            token_type_ids[row, :size] = torch.tensor(encoding.type_ids)
            attention_mask[row, :size] = 1
        return input_ids, token_type_ids, attention_mask

    @torch.no_grad()
    def _classify(self, texts: list[str], pairs: list[str] | None) -> list[dict[str, Any]]:
        logits = self.model(*self._encode(texts, pairs)).logits.float()
        if self.kind == "regression":
            return [{"value": float(value)} for value in logits[:, 0]]
        probabilities = logits.softmax(dim=-1)
        labels = self.model.label_names
        rows = []
        for row in probabilities.tolist():
            best = max(range(len(row)), key=row.__getitem__)
            rows.append(
                {
                    "label": labels[best],
                    "score": row[best],
                    "scores": dict(zip(labels, row, strict=True)),
                }
            )
        return rows

    @torch.no_grad()
    def _fill_mask(self, texts: list[str], top_k: int) -> list[dict[str, Any]]:
        mask_id = self.tokenizer.token_to_id(self.mask_token)
        input_ids, token_type_ids, attention_mask = self._encode(texts, None)
        masks = (input_ids == mask_id).nonzero().tolist()
        for row, text in enumerate(texts):
            count = sum(1 for mask_row, _ in masks if mask_row == row)
            if count != 1:
                raise MlflowException.invalid_parameter_value(
                    f"text {row} must contain exactly one {self.mask_token} (within the first "
                    f"{input_ids.shape[1]} tokens), found {count}: {text[:80]!r}"
                )
        logits = self.model.prediction_logits(input_ids, token_type_ids, attention_mask)
        positions = torch.tensor([position for _, position in masks])
        mask_logits = logits[torch.arange(len(texts)), positions].float()
        special_ids = [
            token_id
            for token_id, token in self.tokenizer.get_added_tokens_decoder().items()
            if token.special
        ]
        mask_logits[:, special_ids] = float("-inf")
        top = mask_logits.softmax(dim=-1).topk(min(top_k, mask_logits.shape[-1]), dim=-1)
        rows = []
        for text, scores, ids in zip(texts, top.values.tolist(), top.indices.tolist(), strict=True):
            tokens = [self.tokenizer.id_to_token(token_id) for token_id in ids]
            best = tokens[0].removeprefix("##")
            rows.append(
                {
                    "tokens": tokens,
                    "scores": scores,
                    "sequence": text.replace(self.mask_token, best, 1),
                }
            )
        return rows


def checked_strings(values: pd.Series, field: str) -> list[str]:
    """The values of one input field; a value that is not a string is a 400 naming field and row."""
    for row, value in enumerate(values):
        if not isinstance(value, str):
            raise MlflowException.invalid_parameter_value(
                f"'{field}' of row {row} must be a string, got {json_type(value)}"
            )
    return list(values)


def json_type(value: Any) -> str:
    """What a request's value was, in JSON's words (null, a number, an object...)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "null"
    if isinstance(value, bool | np.bool_):
        return "a boolean"
    if isinstance(value, int | float | np.number):
        return f"the number {value}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple | np.ndarray):
        return "an array"
    return type(value).__name__


set_model(BertforgeModel())
