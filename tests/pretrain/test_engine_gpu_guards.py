"""The GPU path's one-line refusals, checked on CPU: out of memory in a step, more ranks than
GPUs, bf16 on a GPU without it, torch.compile where torch cannot compile; and the next-step
prefetch (used on CUDA) giving exactly the batches of the plain path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch._dynamo
import torch.utils._triton

from bertforge.errors import BertforgeError
from bertforge.pretrain.data import BatchPlan, ExampleSplit, StepBatches
from bertforge.pretrain.engine import GpuMemory, out_of_memory_error
from bertforge.pretrain.launch import check_gpu_count
from bertforge.pretrain.params import check_device_support
from tests.factories import (
    cpu_collator,
    pretrain_params,
    write_pretrain_examples,
    write_pretrain_tokenizer,
)

GIB = 2**30


def test_out_of_memory_names_the_step_the_memory_seen_and_micro_batch_size():
    memory = GpuMemory(peak_bytes=int(77.5 * GIB), total_bytes=int(79.2 * GIB), name="NVIDIA H100")
    params = pretrain_params(micro_batch_size=64, global_batch_size=128, zero_stage=2)
    message = str(out_of_memory_error(params, 1, memory))
    assert "\n" not in message
    assert message.startswith(
        "pretrain: the GPU ran out of memory at step 1 (NVIDIA H100: 77.5 GiB allocated at the "
        "peak of 79.2 GiB); lower pretrain.micro_batch_size (now 64; "
    )
    assert "raise zero_stage (now 2)" in message and "precision bf16" in message
    zero3_bf16 = pretrain_params(zero_stage=3, precision="bf16")
    message = str(out_of_memory_error(zero3_bf16, 3, memory))
    assert "zero_stage" not in message and "precision" not in message


def test_more_ranks_than_visible_gpus_is_one_line():
    with pytest.raises(BertforgeError, match=r"processes: 3 ranks .* only 2 visible GPUs"):
        check_gpu_count(3, gpus=2)
    check_gpu_count(2, gpus=2)
    check_gpu_count(8, gpus=0)  # CPU ranks: no GPU to count


def test_bf16_on_a_gpu_without_it_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "Tesla V100-SXM2-16GB")
    with pytest.raises(BertforgeError, match=r"bf16 .* but Tesla V100-SXM2-16GB has none"):
        check_device_support(pretrain_params(precision="bf16"), "cuda")
    check_device_support(pretrain_params(precision="fp16"), "cuda")


def test_bf16_without_fp32_master_weights_is_refused():
    with pytest.raises(BertforgeError, match=r"bf16 with zero_stage 0 .* got 0$"):
        check_device_support(pretrain_params(precision="bf16", zero_stage=0), "cuda")
    check_device_support(pretrain_params(precision="bf16", zero_stage=1), "cuda")
    check_device_support(pretrain_params(precision="fp16", zero_stage=0), "cuda")


def test_compile_where_torch_cannot_compile_is_refused(monkeypatch):
    check_device_support(pretrain_params(compile=True), "cpu")  # this machine can
    monkeypatch.setattr(torch.utils._triton, "has_triton", lambda: False)
    with pytest.raises(BertforgeError, match=r"pretrain.compile true .* needs Triton on a GPU"):
        check_device_support(pretrain_params(compile=True), "cuda")
    check_device_support(pretrain_params(compile=False), "cuda")
    monkeypatch.setattr(torch._dynamo, "is_dynamo_supported", lambda: False)
    with pytest.raises(BertforgeError, match=r"does not compile under this Python"):
        check_device_support(pretrain_params(compile=True), "cpu")


def test_prefetching_the_next_step_gives_the_same_batches(tmp_path: Path):
    write_pretrain_tokenizer(tmp_path / "tokenizer")
    write_pretrain_examples(tmp_path / "examples", tmp_path / "tokenizer")
    split = ExampleSplit.load(tmp_path / "examples/train")
    plan = BatchPlan(
        split.lengths, seed=0, world_size=2, micro_batch_size=4, accumulation=2, window=2
    )
    collate = cpu_collator(split)
    plain = StepBatches(plan, collate, rank=1, end=12, ahead=False)
    ahead = StepBatches(plan, collate, rank=1, end=12, ahead=True)
    # a resumed run starts mid-way; a step taken out of order is collated on the spot
    for step in [5, 6, 7, 9, 10, 11]:
        expected, got = plain.take(step), ahead.take(step)
        assert len(expected) == len(got) == 2
        for left, right in zip(expected, got, strict=True):
            assert left.keys() == right.keys()
            assert all(torch.equal(left[name], right[name]) for name in left)
    assert ahead.pending is None  # nothing collated past the last step
