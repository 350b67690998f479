"""The stage: check the inputs, make every split's instances on `num_proc` processes, write
meta.json and return the metrics."""

from __future__ import annotations

import multiprocessing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from bertforge.constants import EXAMPLE_SPLITS
from bertforge.errors import BertforgeError
from bertforge.examples.meta import META_FILE, examples_meta, write_meta
from bertforge.examples.metrics import split_metrics
from bertforge.examples.params import ExamplesParams
from bertforge.examples.processes import (
    UnitSettings,
    helper_processes,
    lean_processes,
    process_share,
    start_worker,
)
from bertforge.shards import count_rows
from bertforge.tokenizer.files import TokenizerInfo, inspect_tokenizer


@dataclass(frozen=True)
class ExamplesInputs:
    """The checked inputs of the stage."""

    ingested: Path
    tokenizer: TokenizerInfo
    documents: dict[str, int]


def check_inputs(ingested: Path, tokenizer_dir: Path, params: ExamplesParams) -> ExamplesInputs:
    """Fail early, in one line, on anything that would make the stage fail later."""
    ingested = Path(ingested)
    documents = {}
    for split in EXAMPLE_SPLITS:
        split_dir = ingested / split
        if not split_dir.is_dir():
            raise BertforgeError(f"{split_dir}: not found (run the ingest stage first)")
        documents[split] = count_rows(split_dir)
        if documents[split] == 0:
            raise BertforgeError(f"{split_dir}: no documents (add text to the corpus)")
        if params.nsp and documents[split] == 1:
            raise BertforgeError(
                f"{split_dir}: nsp needs at least two documents, found one "
                "(set examples.nsp false or add documents)"
            )
    return ExamplesInputs(ingested, inspect_tokenizer(tokenizer_dir), documents)


def write_examples(
    inputs: ExamplesInputs, output: Path, params: ExamplesParams, progress: bool = True
) -> dict[str, dict[str, float]]:
    """Write every split's instances and meta.json into `output`; return the metrics per split."""
    output = Path(output)
    settings = UnitSettings(params, inputs.tokenizer, output, inputs.ingested)
    for split in EXAMPLE_SPLITS:
        (output / split).mkdir(parents=True, exist_ok=True)
    shared = multiprocessing.Array("q", 2)  # the next unit to claim, the documents done
    start_worker(settings, shared)  # this process takes a share too; forked helpers inherit it
    progress_bar = tqdm(
        total=sum(inputs.documents.values()), desc="examples", unit="doc", disable=not progress
    )

    def show_progress() -> None:
        progress_bar.update(shared[1] - progress_bar.n)

    with (
        progress_bar,
        lean_processes(),
        helper_processes(process_share, params.num_proc - 1) as helpers,
    ):
        counts = [process_share(on_unit=show_progress)]
        for helper in helpers:
            # each wait ends: with the helper's counts, or with the pipe its death closed
            while not helper.results.poll(0.2):
                show_progress()
            counts.append(helper.result())
        show_progress()
    totals = {split: sum((share[split] for share in counts), Counter()) for split in EXAMPLE_SPLITS}
    metrics = {split: split_metrics(totals[split], params) for split in EXAMPLE_SPLITS}
    instances = {split: int(metrics[split]["instances"]) for split in EXAMPLE_SPLITS}
    write_meta(output / META_FILE, examples_meta(inputs.tokenizer, params), instances)
    return metrics
