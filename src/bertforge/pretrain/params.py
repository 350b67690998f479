"""The ``pretrain`` params: the BERT shape, the batch arithmetic, what needs a GPU, the paths.

docs/pretrain.md explains each knob; `PretrainParams` checks ranges once, at stage start, and
`accumulation_steps` / `check_device_support` check what depends on the job (processes, device).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from bertforge.errors import BertforgeError
from bertforge.model import BertConfig
from bertforge.model.attention import check_varlen_kernel
from bertforge.params import require
from bertforge.parent import ParentSpec

ZERO_STAGES = (0, 1, 2, 3)


@dataclass(frozen=True)
class ModelParams:
    """``pretrain.model``: the BERT shape; names and meanings are transformers' `BertConfig`.

    The vocabulary size and [PAD] id are not knobs: they are the tokenizer's (data/examples
    records them), so the export always matches its vocab.txt.
    """

    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    intermediate_size: int = 512
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pre_layer_norm: bool = False

    def __post_init__(self) -> None:
        self.bert_config(vocab_size=1, pad_token_id=0)  # BertConfig's own range checks

    def bert_config(self, vocab_size: int, pad_token_id: int) -> BertConfig:
        return BertConfig(
            vocab_size=vocab_size, pad_token_id=pad_token_id, **dataclasses.asdict(self)
        )


@dataclass(frozen=True)
class PretrainParams:
    """The ``pretrain`` section of params.yaml (docs/pretrain.md explains each knob)."""

    model: ModelParams = field(default_factory=ModelParams)
    init_from: ParentSpec | None = None  # a parent checkpoint to continue (docs/pretrain.md)
    processes: int | None = 2
    zero_stage: int = 2
    micro_batch_size: int = 16
    gradient_accumulation_steps: int | None = None
    global_batch_size: int = 32
    optimizer: Literal["adamw", "lamb"] = "adamw"
    lr: float = 1e-3
    betas: tuple[float, ...] = (0.9, 0.999)
    weight_decay: float = 0.01
    eps: float = 1e-6
    warmup_steps: int = 100
    decay: Literal["linear", "polynomial"] = "linear"
    decay_power: float = 1.0
    gradient_clipping: float = 1.0
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    mlm_loss_normalisation: Literal["micro_batch", "global_batch"] = "global_batch"
    unpad: bool = False  # micro-batches of real tokens only (cumulative lengths), no padding
    unpad_attention: Literal["auto", "padded-sdpa", "nested-sdpa", "flash-attn"] = "auto"
    max_steps: int = 1400
    seed: int = 0
    length_bucket_batches: int = 50
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    eval_every: int = 0
    eval_batch_size: int = 128
    max_nonfinite_in_a_row: int = 5
    compile: bool = False
    log_every: int = 10
    stall_timeout_s: float = 1800.0
    rendezvous_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        for name in POSITIVE_INTEGERS:
            require(getattr(self, name) >= 1, name, "must be at least 1", getattr(self, name))
        for name, meaning_of_zero in ZERO_ALLOWED.items():
            value = getattr(self, name)
            require(value >= 0, name, f"must be at least 0 (0: {meaning_of_zero})", value)
        for name in ("processes", "gradient_accumulation_steps"):
            value = getattr(self, name)
            require(value is None or value >= 1, name, "must be null or at least 1", value)
        for name in ("lr", "eps", "decay_power", "stall_timeout_s", "rendezvous_timeout_s"):
            require(getattr(self, name) > 0, name, "must be positive", getattr(self, name))
        require(
            self.zero_stage in ZERO_STAGES,
            "zero_stage",
            "must be one of 0, 1, 2, 3 (DeepSpeed ZeRO stages)",
            self.zero_stage,
        )
        require(
            len(self.betas) == 2 and all(0 <= beta < 1 for beta in self.betas),
            "betas",
            "must be two numbers in [0, 1)",
            list(self.betas),
        )


POSITIVE_INTEGERS = (
    "micro_batch_size",
    "global_batch_size",
    "max_steps",
    "checkpoint_every",
    "keep_checkpoints",
    "eval_batch_size",
    "max_nonfinite_in_a_row",
    "log_every",
)
ZERO_ALLOWED = {
    "weight_decay": "none",
    "warmup_steps": "none",
    "gradient_clipping": "off",
    "length_bucket_batches": "no length bucketing",
    "eval_every": "at the end only",
}

RUNTIME_ONLY_PARAMS = frozenset(
    {
        "processes",  # the world size itself is part of the fingerprint
        "checkpoint_every",
        "keep_checkpoints",
        "eval_every",
        "eval_batch_size",
        "max_nonfinite_in_a_row",
        "log_every",
        "stall_timeout_s",
        "rendezvous_timeout_s",
    }
)
"""Params that do not change the trained weights; changing them never invalidates a checkpoint."""


@dataclass(frozen=True)
class PretrainPaths:
    """Where the stage reads and writes (relative to the repo root)."""

    examples: Path = Path("data/examples")
    tokenizer: Path = Path("data/tokenizer")
    checkpoints: Path = Path("data/pretrained/checkpoints")
    export: Path = Path("data/pretrained/model")
    train_log: Path = Path("metrics/pretrain_log.tsv")


def default_processes(params: PretrainParams) -> int:
    """How many ranks a job started by the stage itself runs: `processes`, or every GPU."""
    if params.processes is not None:
        return params.processes
    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def accumulation_steps(params: PretrainParams, world_size: int) -> int:
    """Micro-batches per rank per optimizer step, so that micro × accumulation × ranks = global."""
    per_pass = params.micro_batch_size * world_size
    if params.global_batch_size % per_pass != 0:
        raise BertforgeError(
            f"params.yaml: pretrain.global_batch_size must be a multiple of micro_batch_size × "
            f"processes = {params.micro_batch_size} × {world_size} = {per_pass}, "
            f"got {params.global_batch_size}"
        )
    derived = params.global_batch_size // per_pass
    given = params.gradient_accumulation_steps
    if given is not None and given != derived:
        raise BertforgeError(
            f"params.yaml: pretrain.global_batch_size must equal micro_batch_size × "
            f"gradient_accumulation_steps × processes = {params.micro_batch_size} × {given} × "
            f"{world_size} = {per_pass * given}, got {params.global_batch_size} "
            "(or set gradient_accumulation_steps: null to derive it)"
        )
    return derived


def check_device_support(params: PretrainParams, device_type: str) -> None:
    """fp16 mixed precision and LAMB are GPU features here, bf16 a GPU's or a CPU's with
    bf16 instructions (AMX, AVX512-BF16); say so before starting.

    So are bf16 on a GPU without it, torch.compile where torch cannot compile (a C++
    compiler, which pretrain/ops.py checks, is the other thing compiling needs) and an
    unpadded attention kernel that cannot run here.
    """
    if params.compile:
        missing = compile_unavailable(device_type)
        if missing is not None:
            raise BertforgeError(f"params.yaml: pretrain.compile true cannot run here: {missing}")
    if params.unpad:
        check_unpad_attention(params, device_type)
    if device_type == "cuda":
        # bf16 needs compute capability 8.0 (A100, H100, RTX 30xx and later)
        bf16 = params.precision == "bf16" and torch.cuda.is_available()
        if bf16 and not torch.cuda.is_bf16_supported():
            raise BertforgeError(
                f"params.yaml: pretrain.precision bf16 needs a GPU with bf16 (compute "
                f"capability 8.0+), but {torch.cuda.get_device_name()} has none; "
                "use fp16 or fp32, got 'bf16'"
            )
    # DeepSpeed keeps fp32 master weights for bf16 only in ZeRO's optimizer (stages 1-3)
    if params.precision == "bf16" and params.zero_stage == 0:
        raise BertforgeError(
            "params.yaml: pretrain.precision bf16 with zero_stage 0 would train the bf16 "
            "weights themselves (DeepSpeed keeps fp32 master weights in ZeRO stages 1-3); "
            "use zero_stage 1, 2 or 3, got 0"
        )
    if device_type == "cuda":
        return
    if params.precision == "fp16":
        raise BertforgeError(
            "params.yaml: pretrain.precision fp16 needs a GPU; use fp32, or bf16 on a CPU "
            "with AMX or AVX512-BF16, got 'fp16'"
        )
    if params.precision == "bf16" and not cpu_has_native_bf16():
        raise BertforgeError(
            "params.yaml: pretrain.precision bf16 on a CPU needs AMX or AVX512-BF16 "
            "instructions, which this CPU lacks (bf16 would run emulated, slower than fp32); "
            "use fp32, got 'bf16'"
        )
    if params.optimizer == "lamb":
        raise BertforgeError(
            "params.yaml: pretrain.optimizer lamb needs a GPU (DeepSpeed's FusedLamb); "
            "use adamw on CPU, got 'lamb'"
        )


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (Intel AMX, or AVX512-BF16 as on
    AMD Zen 4 and Intel Cooper Lake); elsewhere torch emulates bf16, slower than fp32."""
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def check_unpad_attention(params: PretrainParams, device_type: str) -> None:
    """The unpadded batches' attention kernel must run here: flash-attn needs its package, a
    GPU and 16-bit activations."""
    if params.unpad_attention != "flash-attn":
        return
    # flash-attn's variable-length kernel: CUDA only, bf16/fp16 only
    where = "a GPU" if device_type != "cuda" else None
    if where is None and params.precision == "fp32":
        where = "precision bf16 or fp16"
    if where is not None:
        raise BertforgeError(
            f"params.yaml: pretrain.unpad_attention flash-attn needs {where}; use auto, "
            f"padded-sdpa or nested-sdpa, got 'flash-attn' (precision {params.precision}, "
            f"device {device_type})"
        )
    try:
        check_varlen_kernel("flash-attn")
    except BertforgeError as error:
        raise BertforgeError(f"params.yaml: pretrain.unpad_attention: {error}") from None


def compile_unavailable(device_type: str) -> str | None:
    """Why `torch.compile` cannot run on `device_type` here, or None when it can."""
    import torch._dynamo
    from torch.utils._triton import has_triton

    if not torch._dynamo.is_dynamo_supported():
        return f"torch {torch.__version__} does not compile under this Python; set compile: false"
    if device_type == "cuda" and not has_triton():
        return "it needs Triton on a GPU (pip install triton), or set compile: false"
    return None
