"""Attention kernels: masked SDPA on padded rows, and three ways to attend over unpadded tokens.

Every kernel takes the packed Q/K/V projection (one [.., 3·H] matmul output) and returns the
context [.., H]; each token attends to the real tokens of its own sequence only, so all kernels
compute the same function and differ in speed and in where they run:

- ``padded-sdpa``: scatter the real tokens into [B, max_seqlen] rows, run the padded kernel with
  a key mask, gather them back. Any device, any dtype; only attention sees padding (the dense
  layers around it run on real tokens only). The default on CPU.
- ``nested-sdpa``: `scaled_dot_product_attention` on nested jagged tensors
  (`torch.nested`, layout=torch.jagged): on CUDA a variable-length flash / memory-efficient
  kernel, no padding at all. The default on CUDA.
- ``flash-attn``: `flash_attn_varlen_qkvpacked_func` from the optional flash-attn package
  (bf16/fp16 only).

None reads a tensor's values on the host: sizes come from `Unpadded`, made with the batch.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F
from torch import Tensor

from bertforge.errors import BertforgeError

VARLEN_KERNELS = ("auto", "padded-sdpa", "nested-sdpa", "flash-attn")


def attend_padded(qkv: Tensor, key_mask: Tensor, num_heads: int, dropout_p: float) -> Tensor:
    """[B, T, 3·H] → [B, T, H]; `key_mask` [B, 1, 1, T] bool, True where a key is real."""
    batch, length, width = qkv.shape
    qkv = qkv.view(batch, length, 3, num_heads, width // (3 * num_heads))
    query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, T, head_dim]
    if qkv.device.type == "cpu" and qkv.dtype == torch.bfloat16:
        # torch's CPU flash kernel is ~7x slower backward in bf16 than in float32
        query, key, value = query.float(), key.float(), value.float()
    context = F.scaled_dot_product_attention(
        query, key, value, attn_mask=key_mask, dropout_p=dropout_p
    ).to(qkv.dtype)
    return context.transpose(1, 2).reshape(batch, length, width // 3)


def attend_by_padding(
    qkv: Tensor,
    cu_seqlens: Tensor,
    max_seqlen: int,
    padded_index: Tensor,
    num_heads: int,
    dropout_p: float,
) -> Tensor:
    """[N, 3·H] → [N, H] through `attend_padded` on [B, max_seqlen] rows (``padded-sdpa``)."""
    batch = cu_seqlens.numel() - 1
    slots = qkv.new_zeros(batch * max_seqlen, qkv.shape[-1])
    padded = slots.index_copy(0, padded_index, qkv).view(batch, max_seqlen, -1)
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    key_mask = torch.arange(max_seqlen, device=qkv.device) < lengths[:, None]
    context = attend_padded(padded, key_mask[:, None, None, :], num_heads, dropout_p)
    return context.flatten(0, 1).index_select(0, padded_index)


def attend_nested(
    qkv: Tensor, cu_seqlens: Tensor, max_seqlen: int, num_heads: int, dropout_p: float
) -> Tensor:
    """[N, 3·H] → [N, H] by SDPA on nested jagged tensors (``nested-sdpa``).

    Q, K and V must be contiguous [N, heads, d] and share one offsets tensor (their ragged
    dimension is then one symbol); `max_seqlen` and `min_seqlen` are given so that no kernel
    asks the device for them.
    """
    tokens, width = qkv.shape
    query, key, value = qkv.view(tokens, 3, num_heads, width // (3 * num_heads)).unbind(1)
    offsets = cu_seqlens.long()

    def nested(states: Tensor) -> Tensor:  # [N, heads, d] → [B, heads, j, d]
        return torch.nested.nested_tensor_from_jagged(
            states.contiguous(), offsets, max_seqlen=max_seqlen, min_seqlen=1
        ).transpose(1, 2)

    context = F.scaled_dot_product_attention(
        nested(query), nested(key), nested(value), dropout_p=dropout_p
    )
    return context.transpose(1, 2).values().reshape(tokens, width // 3)


def attend_flash(
    qkv: Tensor, cu_seqlens: Tensor, max_seqlen: int, num_heads: int, dropout_p: float
) -> Tensor:
    """[N, 3·H] → [N, H] by flash-attn's variable-length kernel (``flash-attn``)."""
    from flash_attn import flash_attn_varlen_qkvpacked_func

    if qkv.dtype not in (torch.bfloat16, torch.float16):
        raise BertforgeError(
            f"attention 'flash-attn' runs in bf16 or fp16 only, got {qkv.dtype} activations "
            "(use autocast or bf16 weights, or attention 'nested-sdpa')"
        )
    tokens, width = qkv.shape
    packed = qkv.view(tokens, 3, num_heads, width // (3 * num_heads))
    context = flash_attn_varlen_qkvpacked_func(packed, cu_seqlens, max_seqlen, dropout_p)
    return context.reshape(tokens, width // 3)


def check_varlen_kernel(name: str) -> None:
    """A one-line error for an unknown kernel, or for flash-attn when it is not installed."""
    if name not in VARLEN_KERNELS:
        raise BertforgeError(f"attention must be one of {list(VARLEN_KERNELS)}, got {name!r}")
    if name == "flash-attn" and importlib.util.find_spec("flash_attn") is None:
        raise BertforgeError(
            "attention 'flash-attn' needs the flash-attn package, which is not installed "
            "(pip install 'bertforge[flash]' on a CUDA machine), or use attention 'nested-sdpa'"
        )


def resolve_varlen_kernel(name: str, device: torch.device) -> str:
    """``auto``: nested-sdpa on CUDA (variable-length kernels), padded-sdpa elsewhere."""
    if name != "auto":
        return name
    return "nested-sdpa" if device.type == "cuda" else "padded-sdpa"
