"""Stage `vocab`: data/ingested/train → data/tokenizer (a WordPiece BERT tokenizer).

Reads params.yaml `vocab`, trains on the training documents only, writes vocab.txt,
tokenizer.json and the transformers configs atomically (the previous data/tokenizer stays as it
was on any failure), measures the tokenizer on the held-out documents (metrics/vocab.json) and
logs params, metrics and the tokenizer to MLflow. See docs/vocab.md.
"""

from __future__ import annotations

from pathlib import Path

from bertforge.io import atomic_outputs
from bertforge.params import load_section
from bertforge.stage import run_stage
from bertforge.tokenizer.files import write_tokenizer
from bertforge.tracking import stage_run
from bertforge.vocab.ingested import check_ingested
from bertforge.vocab.metrics import check_unk_rate, heldout_metrics
from bertforge.vocab.params import VocabParams
from bertforge.vocab.parent import load_parent_vocabulary, parent_metrics, tokenizer_from_parent
from bertforge.vocab.train import train_tokenizer

TRAIN = Path("data/ingested/train")
HELDOUT = Path("data/ingested/heldout")
TOKENIZER = Path("data/tokenizer")
METRICS = Path("metrics/vocab.json")


def main() -> None:
    params = load_section(VocabParams, "vocab")
    check_ingested(TRAIN, HELDOUT)
    # vocab.init_from: the parent's vocabulary (checked first), extended or not
    parent = load_parent_vocabulary(params) if params.init_from is not None else None
    inputs = {"ingested_train": TRAIN, "ingested_heldout": HELDOUT}
    tags = parent.parent.tags() if parent else None
    with stage_run("vocab", params, inputs=inputs, tags=tags) as run:
        extension = None
        if parent is None:
            tokenizer = train_tokenizer(TRAIN, params)
        else:
            tokenizer, extension = tokenizer_from_parent(parent, TRAIN, params)
        with atomic_outputs(TOKENIZER, METRICS) as staged:
            write_tokenizer(tokenizer, staged.directory, params)
            if extension is not None:
                extension.write(staged.directory)
            metrics = heldout_metrics(tokenizer, HELDOUT)
            if parent is not None:
                metrics |= parent_metrics(parent, extension)
            check_unk_rate(metrics, params.max_unk_rate, HELDOUT)
            staged.metrics = metrics
        run.log_metrics(metrics)
        run.log_artifact(TOKENIZER, artifact_path="tokenizer")


if __name__ == "__main__":
    run_stage(main)
