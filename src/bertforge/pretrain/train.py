"""The run, which every rank calls: train (or resume), evaluate, export (`pretrain`).

`train` is the loop: each step reads its micro-batches from the `BatchPlan`, sets the learning
rate, runs `train_step`, reports, evaluates every `eval_every` steps and checkpoints every
`checkpoint_every`; `max_nonfinite_in_a_row` skipped steps stop the run.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bertforge.errors import BertforgeError
from bertforge.model import BertForPreTraining, count_parameters
from bertforge.pretrain.checkpoint import CheckpointStore, Progress
from bertforge.pretrain.data import BatchPlan, Collator, ExampleSplit, StepBatches, masking_rule
from bertforge.pretrain.engine import (
    Topology,
    build_engine,
    gpu_memory_seen,
    learning_rate,
    out_of_memory_error,
    start_distributed,
)
from bertforge.pretrain.evaluation import (
    eval_batches,
    evaluate,
    unigram_counts,
    unigram_log_probabilities,
)
from bertforge.pretrain.export import (
    consolidated_state_dict,
    export_pretrained,
    training_digest,
)
from bertforge.pretrain.init import load_parent_weights
from bertforge.pretrain.inputs import PretrainInputs
from bertforge.pretrain.ops import prepare_ops
from bertforge.pretrain.params import PretrainParams, PretrainPaths
from bertforge.pretrain.progress import (
    MetricsLogger,
    StepLogger,
    TrainingTime,
    batch_flops,
    job_peak_flops,
)
from bertforge.pretrain.rng import HELDOUT_MASK, MASK, seed_generators
from bertforge.pretrain.step import train_step


@dataclass
class TrainingData:
    """The examples as the loop reads them: the batch plan, collators, held-out batches."""

    plan: BatchPlan
    train: Collator
    heldout: Collator
    heldout_batches: list[tuple[np.ndarray, bool]]
    unigram_log_probs: torch.Tensor

    @classmethod
    def load(
        cls,
        params: PretrainParams,
        inputs: PretrainInputs,
        paths: PretrainPaths,
        topology: Topology,
    ) -> TrainingData:
        meta = inputs.meta
        train = ExampleSplit.load(paths.examples / "train")
        heldout = ExampleSplit.load(paths.examples / "heldout")
        masking = masking_rule(meta, paths.tokenizer) if meta["masking"] == "dynamic" else None
        common = {
            "pad_id": inputs.special_ids["[PAD]"],
            "max_predictions_per_seq": meta["max_predictions_per_seq"],
            "device": topology.device,
            "dynamic_masking": masking,
            "seed": params.seed,
            "pad_multiple": 8 if topology.device.type == "cuda" else 1,  # tensor-core tiles
            "unpad": params.unpad,  # real tokens only, with cumulative lengths
            "attention": params.unpad_attention,
        }
        plan = BatchPlan(
            train.lengths,
            seed=params.seed,
            world_size=topology.world_size,
            micro_batch_size=params.micro_batch_size,
            accumulation=inputs.accumulation,
            window=params.length_bucket_batches,
        )
        return cls(
            plan=plan,
            train=Collator(train, mask_domain=MASK, **common),
            heldout=Collator(heldout, mask_domain=HELDOUT_MASK, **common),
            heldout_batches=eval_batches(
                heldout.lengths, params.eval_batch_size, topology.rank, topology.world_size
            ),
            unigram_log_probs=unigram_log_probabilities(
                unigram_counts(train, meta), topology.device
            ),
        )

    def evaluate(self, engine: Any) -> dict[str, float]:
        return evaluate(engine, self.heldout, self.heldout_batches, self.unigram_log_probs)


def pretrain(
    params: PretrainParams,
    inputs: PretrainInputs,
    paths: PretrainPaths,
    log_metrics: MetricsLogger | None = None,
    lineage: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Train (or resume), evaluate, export. Returns the summary metrics on rank 0, else None.

    Every rank calls this. `log_metrics(metrics, step)` receives the per-step metrics (rank 0);
    `lineage` goes into the export's lineage.json: content only (no run id, no time).
    """
    prepare_ops(params, torch.cuda.is_available())  # no silent JIT build, no stale lock
    topology = start_distributed(params.rendezvous_timeout_s)
    if topology.world_size != inputs.world_size:
        raise BertforgeError(
            f"the job has {topology.world_size} processes, but its inputs were checked for "
            f"{inputs.world_size}"
        )
    torch.manual_seed(params.seed)  # the same initial weights on every rank
    model = BertForPreTraining(inputs.config)
    init = {"parent": None}
    if inputs.parent is not None:  # continued pretraining: the parent's weights, bit-exactly
        init = load_parent_weights(model, inputs.parent)
        if topology.is_main:
            report_init(init)
    parameters = count_parameters(model)  # before ZeRO-3 partitions them away
    seed_generators(params.seed, topology.rank)
    engine, optimizer = build_engine(model, params, inputs.accumulation, topology.device)
    try:
        store = CheckpointStore(paths.checkpoints)
        progress = store.resume(engine, inputs.fingerprint, topology)
        start_step = progress.step
        data = TrainingData.load(params, inputs, paths, topology)

        peak_flops = job_peak_flops(topology.device, params.precision)
        this_run = train(
            params,
            inputs,
            engine,
            optimizer,
            data,
            store,
            progress,
            topology,
            peak_flops,
            log_metrics,
        )
        if this_run is None:
            return None  # stopped on non-finite steps; rank 0 raised
        heldout = data.evaluate(engine)
        state = consolidated_state_dict(engine.module)
        if not topology.is_main:
            return None
        export_pretrained(
            engine.module,
            state,
            paths.tokenizer,
            paths.export,
            {
                **(lineage or {}),
                "vocab_digest": inputs.vocab_digest,
                "examples_digest": inputs.examples_digest,
                "training_digest": training_digest(inputs.fingerprint),
                "steps": params.max_steps,
                "parent": init["parent"],
            },
        )
        store.discard_previous()  # the new run has succeeded: the run it superseded can go
        log = store.training_log()
        log.publish(paths.train_log)
        final = log.last_row()
        return {
            "heldout": heldout,
            "init": init,
            "train": {
                "steps": params.max_steps,
                "steps_this_run": params.max_steps - start_step,
                "resumed_from_step": start_step,
                "examples_seen": params.max_steps * data.plan.global_batch_size,
                "epochs": params.max_steps / data.plan.steps_per_epoch,
                "nonfinite_steps": progress.nonfinite_total,
                "final_loss": final.get("loss"),
                "final_mlm_accuracy": final.get("mlm_accuracy"),
                # the run's training, over every invocation that trained its steps (the record in
                # the checkpoints): a resume or a re-export keeps the speed of the training
                **(progress.earlier + this_run).summary(),
                "seconds_this_run": this_run.seconds,
            },
            "model": {
                "parameters": parameters,
                "processes": topology.world_size,
                "device": topology.device.type,
            },
        }

    finally:  # its gradient hooks hold it, and its process groups, until the process ends
        engine.destroy()


def train(
    params: PretrainParams,
    inputs: PretrainInputs,
    engine: Any,
    optimizer: torch.optim.Optimizer,
    data: TrainingData,
    store: CheckpointStore,
    progress: Progress,
    topology: Topology,
    peak_flops: float,
    log_metrics: MetricsLogger | None,
) -> TrainingTime | None:
    """The loop from `progress.step` to `max_steps`; returns the training of this invocation.

    Stops after `max_nonfinite_in_a_row` skipped steps: rank 0 raises the one-line error, the
    other ranks return None.
    """
    log = store.training_log() if topology.is_main else None
    logger = StepLogger(params, progress.step, log, log_metrics, peak_flops, topology.rank)
    flops_of = functools.partial(batch_flops, inputs.config)
    engine.train()
    ahead = topology.device.type == "cuda"
    step_batches = StepBatches(data.plan, data.train, topology.rank, params.max_steps, ahead)
    for step in range(progress.step, params.max_steps):
        lr = learning_rate(params, step + 1)
        batches = step_batches.take(step)  # on CUDA the next step's are collated meanwhile
        normalisation = params.mlm_loss_normalisation
        try:
            result = train_step(engine, optimizer, batches, lr, flops_of, normalisation)
        except torch.cuda.OutOfMemoryError as error:  # one line naming the knob, not a trace
            raise out_of_memory_error(params, step + 1, gpu_memory_seen(topology.device)) from error
        progress.advance(result.skipped)
        logger.add(progress.step, result, lr, progress.nonfinite_total)
        if progress.nonfinite_in_a_row >= params.max_nonfinite_in_a_row:
            logger.close()
            if not topology.is_main:
                return None
            raise nonfinite_error(progress, params, store)
        at_end = progress.step == params.max_steps
        if params.eval_every and progress.step % params.eval_every == 0 and not at_end:
            heldout = data.evaluate(engine)
            if log_metrics is not None and topology.is_main:
                log_metrics(
                    {f"heldout_{key}": value for key, value in heldout.items()}, progress.step
                )
        if progress.step % params.checkpoint_every == 0 or at_end:
            state = progress.trainer_state(data.plan, params, inputs.fingerprint, logger.so_far())
            store.save(engine, progress.step, state, topology, params.keep_checkpoints)
    return logger.close()


def report_init(init: Mapping[str, Any]) -> None:
    """The stage log's account of a continued model: its parent and what it did not hold."""
    parent = ", ".join(f"{key} {value}" for key, value in init["parent"].items())
    print(f"pretrain: initialised from {parent}", file=sys.stderr)
    fresh = ", ".join(init["initialized"]) or "none"
    print(f"pretrain: not in the parent, freshly initialised: {fresh}", file=sys.stderr)
    if init["added_vocab_rows"]:
        print(
            f"pretrain: {init['added_vocab_rows']} vocabulary rows added (mean of their "
            "parent pieces)",
            file=sys.stderr,
        )


def nonfinite_error(
    progress: Progress, params: PretrainParams, store: CheckpointStore
) -> BertforgeError:
    return BertforgeError(
        f"pretrain: the loss or gradients were not finite for "
        f"{progress.nonfinite_in_a_row} steps in a row (steps "
        f"{progress.step + 1 - progress.nonfinite_in_a_row}-{progress.step}, none of "
        f"them applied); lower pretrain.lr (now {params.lr:g}) or check the examples; "
        f"{store.kept_runs()}"
    )
