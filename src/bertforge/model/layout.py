"""How a batch lies in memory: padded rows, or the real tokens of all rows concatenated.

The encoder's layers do not care which: embeddings, dense layers and LayerNorms work per token.
What differs is gathered in the two layout classes, which share one interface:
`positions`, `attend`, `first_tokens` (for the pooler) and `gather` (masked positions for
the sparse MLM head). A model's `attention_mask` argument picks the layout: a [B, T] mask means
`Padded`; an `Unpadded` (with 1-D `input_ids` [N]) means the unpadded layout, as MosaicBERT and
ModernBERT run BERT: no FLOPs on padding, attention through a variable-length kernel.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from bertforge.errors import BertforgeError
from bertforge.model.attention import (
    attend_by_padding,
    attend_flash,
    attend_nested,
    attend_padded,
    check_varlen_kernel,
    resolve_varlen_kernel,
)


class Padded(NamedTuple):
    """Rows padded to one length T: states [B, T, H]; keys at padded positions are masked.

    Padded positions never influence real ones, so real tokens' outputs do not depend on how
    much padding a batch has; they still cost their share of every dense layer.
    """

    key_mask: Tensor  # [B, 1, 1, T] bool: True where a key is a real token

    @classmethod
    def from_mask(cls, attention_mask: Tensor) -> Padded:
        return cls(attention_mask.bool()[:, None, None, :])

    def positions(self, input_ids: Tensor) -> Tensor:
        return torch.arange(input_ids.shape[1], device=input_ids.device)

    def attend(self, qkv: Tensor, num_heads: int, dropout_p: float) -> Tensor:
        return attend_padded(qkv, self.key_mask, num_heads, dropout_p)

    def first_tokens(self, states: Tensor) -> Tensor:
        return states[:, 0]

    def gather(self, states: Tensor, positions: Tensor) -> Tensor:
        """States at `positions` [B, P] (row positions) → [B, P, H]."""
        return states.gather(1, positions[:, :, None].expand(-1, -1, states.shape[-1]))


@dataclass(frozen=True)
class Unpadded:
    """Where each sequence lies among a batch's concatenated real tokens: no padding anywhere.

    Passed as `attention_mask`, with `input_ids` and `token_type_ids` 1-D [N]: the real tokens
    of B sequences one after another. Made on the host with the batch (`from_lengths`,
    `from_mask`, `unpad_batch`), so that a forward never waits for the device to tell it a size.
    """

    cu_seqlens: Tensor  # [B + 1] int32: sequence i is tokens cu_seqlens[i]:cu_seqlens[i + 1]
    max_seqlen: int  # the longest sequence (kernels size their work by it)
    position_ids: Tensor  # [N] int64: each token's position within its own sequence
    padded_index: Tensor  # [N] int64: each token's slot in row-major [B, max_seqlen]
    attention: str = "auto"  # the variable-length kernel (bertforge.model.attention)

    def __post_init__(self) -> None:
        check_varlen_kernel(self.attention)

    @classmethod
    def from_lengths(cls, lengths: Sequence[int] | Tensor, attention: str = "auto") -> Unpadded:
        """The layout of sequences of these lengths (each at least 1), concatenated in order."""
        lengths = torch.as_tensor(lengths, dtype=torch.int64)
        if lengths.ndim != 1 or len(lengths) == 0 or bool((lengths < 1).any()):
            raise BertforgeError(
                f"unpadded sequences need lengths of at least 1, got {lengths.tolist()}"
            )
        max_seqlen = int(lengths.max())
        starts = F.pad(lengths.cumsum(0), (1, 0))
        tokens = int(starts[-1])
        first_of_each_token = starts[:-1].repeat_interleave(lengths, output_size=tokens)
        position_ids = torch.arange(tokens) - first_of_each_token
        row_starts = torch.arange(len(lengths)) * max_seqlen
        padded_index = row_starts.repeat_interleave(lengths, output_size=tokens) + position_ids
        return cls(starts.int(), max_seqlen, position_ids, padded_index, attention)

    @classmethod
    def from_mask(cls, attention_mask: Tensor, attention: str = "auto") -> Unpadded:
        """The layout of a right-padded [B, T] mask's real tokens (reads the mask on the host)."""
        mask = attention_mask.bool()
        lengths = mask.sum(1)
        prefixes = torch.arange(mask.shape[1], device=mask.device) < lengths[:, None]
        if not torch.equal(mask, prefixes):
            raise BertforgeError("attention_mask must mark each row's real tokens as a prefix")
        return cls.from_lengths(lengths.cpu(), attention)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Unpadded:
        return self._map_tensors(lambda tensor: tensor.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Unpadded:
        """Page-locked copies, for an asynchronous copy to the GPU (DataLoader calls this)."""
        return self._map_tensors(Tensor.pin_memory)

    def _map_tensors(self, function: Callable[[Tensor], Tensor]) -> Unpadded:
        tensors = {
            field.name: function(getattr(self, field.name))
            for field in dataclasses.fields(self)
            if isinstance(getattr(self, field.name), Tensor)
        }
        return dataclasses.replace(self, **tensors)

    def positions(self, input_ids: Tensor) -> Tensor:
        return self.position_ids

    def attend(self, qkv: Tensor, num_heads: int, dropout_p: float) -> Tensor:
        kernel = resolve_varlen_kernel(self.attention, qkv.device)
        if kernel == "nested-sdpa":
            return attend_nested(qkv, self.cu_seqlens, self.max_seqlen, num_heads, dropout_p)
        if kernel == "flash-attn":
            return attend_flash(qkv, self.cu_seqlens, self.max_seqlen, num_heads, dropout_p)
        return attend_by_padding(
            qkv, self.cu_seqlens, self.max_seqlen, self.padded_index, num_heads, dropout_p
        )

    def first_tokens(self, states: Tensor) -> Tensor:
        """Each sequence's first token ([CLS]): [N, H] → [B, H]."""
        return states.index_select(0, self.cu_seqlens[:-1])

    def gather(self, states: Tensor, positions: Tensor) -> Tensor:
        """States at `positions` [B, P] (positions within each sequence) → [B, P, H]."""
        flat_positions = self.cu_seqlens[:-1, None] + positions
        return states.index_select(0, flat_positions.flatten()).view(*positions.shape, -1)


Layout = Padded | Unpadded


def layout_of(input_ids: Tensor, attention_mask: Tensor | Layout | None) -> Layout:
    """The layout a model's `attention_mask` argument names (None: all tokens real, padded)."""
    if isinstance(attention_mask, Padded | Unpadded):
        return attention_mask
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
    return Padded.from_mask(attention_mask)


def unpad_batch(batch: Mapping[str, Any], attention: str = "auto") -> dict[str, Any]:
    """The same batch in the unpadded layout: real tokens concatenated, `attention_mask` an
    `Unpadded`; other entries (masked positions, labels) are unchanged. Reads the mask on the
    host: call it where batches are made, not inside a step."""
    mask = batch["attention_mask"].bool()
    unpadded = Unpadded.from_mask(mask, attention).to(mask.device)
    tokens = {key: batch[key][mask] for key in ("input_ids", "token_type_ids") if key in batch}
    return {**batch, **tokens, "attention_mask": unpadded}
