"""Stage `examples`: data/ingested + data/tokenizer → data/examples (MLM/NSP instances).

Reads params.yaml `examples`, checks the inputs, writes the train and held-out instances and
meta.json atomically (the previous data/examples stays as it was on any failure), logs to MLflow
and writes metrics/examples.json. See docs/examples.md.
"""

from __future__ import annotations

from pathlib import Path

from bertforge.examples.params import ExamplesParams
from bertforge.examples.segmentation import check_word_segmenter
from bertforge.examples.write import check_inputs, write_examples
from bertforge.io import atomic_outputs
from bertforge.params import flatten, load_section
from bertforge.stage import run_stage
from bertforge.tracking import stage_run

INGESTED = Path("data/ingested")
TOKENIZER = Path("data/tokenizer")
EXAMPLES = Path("data/examples")
METRICS = Path("metrics/examples.json")


def main() -> None:
    params = load_section(ExamplesParams, "examples")
    check_word_segmenter(params.word_segmenter)
    inputs = check_inputs(INGESTED, TOKENIZER, params)
    with stage_run(
        "examples", params, inputs={"ingested": INGESTED, "tokenizer": TOKENIZER}
    ) as run:
        with atomic_outputs(EXAMPLES, METRICS) as staged:
            staged.metrics = write_examples(inputs, staged.directory, params)
        run.log_metrics(flatten(staged.metrics))
        run.log_artifact(EXAMPLES / "meta.json")


if __name__ == "__main__":
    run_stage(main)
