"""The shape and regularisation of a BERT, named as transformers names them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from bertforge.errors import BertforgeError
from bertforge.params import require


@dataclass(frozen=True)
class BertConfig:
    """The shape and regularisation of a BERT; defaults are BERT-base (uncased vocabulary).

    Field names and meanings are transformers' `BertConfig`, so `to_hf_dict` is a plain copy.
    The class also parses as a params.yaml section (`bertforge.params.load_section`).
    """

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: Literal["gelu"] = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    pre_layer_norm: bool = False

    def __post_init__(self) -> None:
        sizes = (
            "vocab_size",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "type_vocab_size",
        )
        for name in sizes:
            require(getattr(self, name) >= 1, name, "must be at least 1", getattr(self, name))
        require(
            self.hidden_size % self.num_attention_heads == 0,
            "hidden_size",
            f"must be a multiple of num_attention_heads ({self.num_attention_heads})",
            self.hidden_size,
        )
        require(self.hidden_act == "gelu", "hidden_act", "must be 'gelu'", self.hidden_act)
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            require(0 <= getattr(self, name) < 1, name, "must be in [0, 1)", getattr(self, name))
        require(self.layer_norm_eps > 0, "layer_norm_eps", "must be positive", self.layer_norm_eps)
        require(
            self.initializer_range > 0,
            "initializer_range",
            "must be positive",
            self.initializer_range,
        )
        require(
            0 <= self.pad_token_id < self.vocab_size,
            "pad_token_id",
            f"must be a token id in [0, {self.vocab_size})",
            self.pad_token_id,
        )

    @property
    def hf_class_prefix(self) -> str:
        """Prefix of the transformers classes that hold this architecture."""
        return "MegatronBert" if self.pre_layer_norm else "Bert"

    def to_hf_dict(self, architectures: Sequence[str] | None = None) -> dict[str, Any]:
        """A transformers config.json for this architecture (default: the pretraining model)."""
        hf = {name: value for name, value in asdict(self).items() if name != "pre_layer_norm"}
        hf |= {
            "model_type": "megatron-bert" if self.pre_layer_norm else "bert",
            "architectures": list(architectures or [f"{self.hf_class_prefix}ForPreTraining"]),
            "is_decoder": False,
            "add_cross_attention": False,
            "tie_word_embeddings": True,
            "dtype": "float32",
        }
        if not self.pre_layer_norm:
            hf["classifier_dropout"] = None
        return hf

    @classmethod
    def from_hf_dict(cls, hf: Mapping[str, Any]) -> BertConfig:
        """Read a transformers BERT / Megatron-BERT config.json; other architectures are errors.

        Keys this model has no use for (label maps, versions) are ignored; settings it does not
        implement (decoder mode, relative positions, another activation) are refused.
        """
        model_type = hf.get("model_type")
        if model_type not in ("bert", "megatron-bert"):
            raise BertforgeError(
                f"model_type must be 'bert' or 'megatron-bert', got {model_type!r}"
            )
        unsupported = {
            "is_decoder": False,
            "add_cross_attention": False,
            "position_embedding_type": "absolute",
        }
        for key, supported in unsupported.items():
            if hf.get(key, supported) != supported:
                raise BertforgeError(f"{key} must be {supported!r}, got {hf[key]!r}")
        known = {field.name for field in fields(cls)} - {"pre_layer_norm"}
        values = {key: hf[key] for key in known if key in hf}
        return cls(**values, pre_layer_norm=model_type == "megatron-bert")
