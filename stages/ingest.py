"""Stage `ingest`: raw text sources → data/ingested/{train,heldout} (cleaned, split documents).

Reads params.yaml `ingest`, resolves its sources (a missing path fails before anything runs),
writes the Parquet shards and metrics/ingest.json atomically and together (the previous pair stays
as it was on any failure) and logs to MLflow. See docs/ingest.md.
"""

from __future__ import annotations

from pathlib import Path

from bertforge.ingest.params import IngestParams
from bertforge.ingest.pipeline import ingest
from bertforge.ingest.sources import resolve_sources
from bertforge.io import atomic_outputs
from bertforge.params import flatten, load_section
from bertforge.stage import run_stage
from bertforge.tracking import stage_run

INGESTED = Path("data/ingested")
METRICS = Path("metrics/ingest.json")


def main() -> None:
    params = load_section(IngestParams, "ingest")
    sources = resolve_sources(params)
    inputs = {source.name: source.path for source in sources if source.path is not None}
    with stage_run("ingest", params, inputs=inputs) as run:
        with atomic_outputs(INGESTED, METRICS) as staged:
            staged.metrics = ingest(params, sources, staged.directory)
        run.log_metrics(flatten(staged.metrics))


if __name__ == "__main__":
    run_stage(main)
