"""Making the units on `num_proc` processes: each claims the next unit nobody has, makes it and
writes its shard itself.

Every process (this one included) is a started worker (`start_worker`): the tokenizer, the
masking rule and the shard contract are loaded once per process, not once per unit. A counter
in shared memory hands out the units (`process_share`): nothing but counts crosses between
processes, and a faster process simply takes more units. `lean_processes` tunes the processes
for this work (threads, garbage collection, freed memory).
"""

from __future__ import annotations

import ctypes
import gc
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from bertforge.constants import EXAMPLE_SPLITS
from bertforge.errors import BertforgeError
from bertforge.examples.masking import MaskingRule
from bertforge.examples.meta import examples_meta
from bertforge.examples.metrics import instance_statistics
from bertforge.examples.params import ExamplesParams
from bertforge.examples.segmentation import SegmentedSentenceTokenizer, load_segmenter
from bertforge.examples.units import (
    SplitDocuments,
    WorkUnit,
    create_unit_instances,
    tokenize_unit,
    unit_generator,
    unit_ranges,
)
from bertforge.parallel import end_when_orphaned
from bertforge.schemas import examples_arrow_schema, examples_schema, validate
from bertforge.shards import write_shard
from bertforge.tokenizer.files import TokenizerInfo, load_tokenizer
from bertforge.tokenizer.sentences import SentenceTokenizer

EXAMPLES_PARQUET_OPTIONS = {
    "compression_level": 1,
    "use_dictionary": False,
    "use_byte_stream_split": [
        f"{column}.list.element" for column in ("input_ids", "masked_lm_positions", "masked_lm_ids")
    ],
}
"""Token ids compress best split into byte streams, not dictionary-encoded: zstd level 1 this
way writes faster and smaller than the default level 3 (benchmarks/bench_examples.py)."""


@dataclass(frozen=True)
class UnitSettings:
    """Everything a worker needs besides the unit itself."""

    params: ExamplesParams
    tokenizer: TokenizerInfo
    output: Path  # where the shards go: output/<split>/part-<unit>.parquet
    ingested: Path  # where the documents come from: ingested/<split>

    def contract(self) -> Any:
        """The pandera contract every shard is checked against before it is written."""
        special = self.tokenizer.special_ids
        return examples_schema(
            vocab_size=self.tokenizer.vocab_size,
            cls_id=special["[CLS]"],
            sep_id=special["[SEP]"],
            max_seq_length=self.params.max_seq_length,
            max_predictions_per_seq=self.params.max_predictions_per_seq,
            nsp=self.params.nsp,
            masking=self.params.masking,
            whole_word_mask=self.params.whole_word_mask,
        )


@dataclass
class UnitResult:
    """What a worker sends back once the unit's shard is written: the counts behind the
    metrics."""

    split_index: int
    counts: dict[str, int]
    documents: int


class _Worker:
    """Per-process state, loaded once per worker by `start_worker`."""

    settings: UnitSettings | None = None
    tokenizer: SentenceTokenizer | SegmentedSentenceTokenizer | None = None
    rule: MaskingRule | None = None
    contract: Any = None
    arrow_schema: pa.Schema | None = None
    shared: Any = None  # counters shared by all the processes: next unit, documents done


def start_worker(settings: UnitSettings, shared: Any) -> None:
    """Load what a process needs to make units; a forked worker finds it already loaded."""
    if _Worker.settings is settings and _Worker.shared is shared:
        return
    # num_proc is the parallelism: keep the Rust tokenizer on this process's one core
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    tokenizer = load_tokenizer(settings.tokenizer.directory)
    meta = examples_meta(settings.tokenizer, settings.params)
    _Worker.settings = settings
    _Worker.shared = shared
    _Worker.tokenizer = SentenceTokenizer(tokenizer, settings.tokenizer.id_dtype)
    if settings.params.word_segmenter != "none":
        segmenter = load_segmenter(settings.params.word_segmenter)
        _Worker.tokenizer = SegmentedSentenceTokenizer(
            tokenizer, settings.tokenizer.id_dtype, segmenter
        )
    _Worker.rule = MaskingRule.from_meta(meta, tokenizer.get_vocab(with_added_tokens=True))
    _Worker.contract = settings.contract()
    _Worker.arrow_schema = examples_arrow_schema(settings.tokenizer.vocab_size)


def unit_shard(split: str, unit_index: int) -> str:
    """The shard of a unit, relative to data/examples: one shard per unit, in unit order."""
    return f"{split}/part-{unit_index:05d}.parquet"


def process_unit(unit: WorkUnit) -> UnitResult:
    """Tokenize a unit, create its instances and write them as its shard, in a started worker."""
    settings = _Worker.settings
    if settings is None:
        raise RuntimeError("process_unit runs in a worker started by start_worker")
    params = settings.params
    tokenized = tokenize_unit(_Worker.tokenizer, unit.documents)
    rng = unit_generator(params.random_seed, unit.split_index, unit.unit_index)
    split = EXAMPLE_SPLITS[unit.split_index]
    where = (
        f"data/ingested/{split} documents {unit.first_document}"
        f"-{unit.first_document + len(unit.documents) - 1}"
    )
    passes = params.dupe_factors[unit.split_index]
    special_ids = settings.tokenizer.special_ids
    instances = create_unit_instances(
        tokenized, params, special_ids, _Worker.rule, passes, rng, where
    )
    shard = unit_shard(split, unit.unit_index)
    write_shard(
        instances.to_arrow(_Worker.arrow_schema),
        settings.output / shard,
        validate=lambda frame: validate(_Worker.contract, frame, f"data/examples/{shard}"),
        arrow_lists=True,
        parquet_options=EXAMPLES_PARQUET_OPTIONS,
    )
    counts = instance_statistics(instances, special_ids["[MASK]"])
    return UnitResult(unit.split_index, counts, len(unit.documents))


def process_share(on_unit: Callable[[], None] | None = None) -> dict[str, Counter[str]]:
    """One process's share of the units, in a started worker; returns the counts behind the
    metrics, per split."""
    settings, shared = _Worker.settings, _Worker.shared
    if settings is None:
        raise RuntimeError("process_share runs in a worker started by start_worker")
    splits = [SplitDocuments(settings.ingested / split) for split in EXAMPLE_SPLITS]
    units = [
        (split_index, unit_index, start, end)
        for split_index, documents in enumerate(splits)
        for unit_index, (start, end) in enumerate(
            unit_ranges(documents.documents, settings.params.negative_pool_size)
        )
    ]
    totals: dict[str, Counter[str]] = {split: Counter() for split in EXAMPLE_SPLITS}
    # take the next unit nobody has claimed, until none is left
    while (claimed := _claim_unit(shared)) < len(units):
        split_index, unit_index, start, end = units[claimed]
        unit = WorkUnit(split_index, unit_index, start, splits[split_index].read(start, end))
        result = process_unit(unit)
        totals[EXAMPLE_SPLITS[result.split_index]].update(result.counts)
        with shared.get_lock():
            shared[1] += result.documents
        if on_unit is not None:
            on_unit()
    return totals


def _claim_unit(shared: Any) -> int:
    with shared.get_lock():
        shared[0] += 1
        return shared[0] - 1


@dataclass
class Helper:
    """A forked process making its share of the units; the result comes back through a pipe.

    A helper that dies without sending it (killed, say by the out-of-memory killer) closes the
    pipe, so waiting for its result ends there too: `result` says so in one line, where a
    `multiprocessing.Pool` would wait forever for the task its dead worker had taken.
    """

    process: Any  # a forked multiprocessing.Process
    results: Any  # the receiving end of its pipe

    def result(self) -> dict[str, Counter[str]]:
        """The helper's counts (its error re-raised here); an error if it died without them."""
        try:
            outcome, value = self.results.recv()
        except EOFError:
            self.process.join(timeout=10)
            code = self.process.exitcode
            how = f"was killed by signal {-code}" if code and code < 0 else f"exited ({code})"
            raise BertforgeError(
                f"examples: helper process {self.process.pid} {how} before finishing its share "
                "of the units (out of memory?); lower examples.num_proc or free memory"
            ) from None
        if outcome == "failed":
            raise value
        return value


@contextmanager
def helper_processes(
    share: Callable[[], dict[str, Counter[str]]], helpers: int
) -> Iterator[list[Helper]]:
    """`helpers` forked processes besides this one, each running `share` once (they inherit
    this process's started worker); any still running at the end are stopped."""
    context = multiprocessing.get_context("fork")
    started: list[Helper] = []
    try:
        for _ in range(helpers):
            results, sender = context.Pipe(duplex=False)
            process = context.Process(
                target=_send_share, args=(share, sender, os.getpid()), daemon=True
            )
            process.start()
            sender.close()  # the helper holds the only sending end: its death closes the pipe
            started.append(Helper(process, results))
        yield started
    finally:
        for helper in started:
            if helper.process.is_alive():
                helper.process.terminate()
            helper.process.join()


def _send_share(share: Callable[[], dict[str, Counter[str]]], sender: Any, parent: int) -> None:
    """(in a helper) Run `share` and send back its counts, or the error it raised.

    If the stage is killed meanwhile (SIGKILL, the out-of-memory killer), the helper ends too:
    it would otherwise claim unit after unit from the shared counter, the dead stage's whole
    remaining work, writing shards into a staging folder nobody will read.
    """
    end_when_orphaned(parent)
    try:
        sender.send(("done", share()))
    except BaseException as error:
        sender.send(("failed", error))
    finally:
        sender.close()


@contextmanager
def lean_processes() -> Iterator[None]:
    """While examples run (forked helpers inherit it): one Arrow thread per process, since
    `num_proc` is the parallelism and Arrow's own pool would put more threads than cores to
    work; no cyclic garbage collection, since the work makes no reference cycles and a full
    collection would walk every piece of the word memo; and freed memory kept for reuse (for
    the rest of the process: glibc has no way back to its adaptive default)."""
    threads, collecting = pa.cpu_count(), gc.isenabled()
    pa.set_cpu_count(1)
    gc.disable()
    _reuse_freed_memory()
    try:
        yield
    finally:
        pa.set_cpu_count(threads)
        if collecting:
            gc.enable()


def _reuse_freed_memory() -> None:
    """glibc hands big freed blocks back to the OS at once (mmap, trimming), so each unit's
    numpy temporaries fault their pages in afresh, in every process (docs/examples.md gives
    the cost). Keep them for reuse instead: blocks up to 64 MB come from the heap, which keeps
    up to 256 MB free. Elsewhere than glibc, nothing to tune."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD
    mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
