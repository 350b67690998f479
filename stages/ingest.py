"""Stage `ingest`: raw text sources → data/ingested/{train,heldout} (cleaned, split documents).

Reads params.yaml `ingest`, resolves its sources (a missing path fails before anything runs),
writes the Parquet shards atomically (the previous data/ingested stays as it was on any failure),
logs to MLflow and writes metrics/ingest.json. See docs/ingest.md.
"""

from __future__ import annotations

from pathlib import Path

from bertforge.ingest.params import IngestParams
from bertforge.ingest.pipeline import ingest
from bertforge.ingest.sources import resolve_sources
from bertforge.io import atomic_directory, write_json_atomic
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
        with atomic_directory(INGESTED) as staging:
            metrics = ingest(params, sources, staging)
        write_json_atomic(METRICS, metrics)
        run.log_metrics(flatten(metrics))


if __name__ == "__main__":
    run_stage(main)
