"""Screenshot the MLflow UI comparing pipeline runs (docs/img/mlflow-compare.png).

Usage:
    dvc exp run -n lr-2e-4 -S finetune.learning_rate=0.0002
    dvc exp run -n batch-32 -S finetune.batch_size=32
    python scripts/screenshot_mlflow_compare.py lr-2e-4 batch-32 [--out docs/img/mlflow-compare.png]

Finds the pipeline runs (tag ``bertforge.kind = pipeline``) named after the given DVC
experiments in the project's MLflow store, starts `mlflow server` on 127.0.0.1 with that store,
opens its compare view of those runs in headless Chromium (Debian's `chromium` package) and
saves the screenshot. Nothing in the store is changed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import mlflow

from bertforge.tracking import EXPERIMENT_NAME, TAG_PREFIX, tracking_uri

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def pipeline_runs(names: list[str]) -> tuple[str, list[str]]:
    """(experiment id, run ids) of the newest pipeline run of each name, in the given order."""
    client = mlflow.MlflowClient(tracking_uri())
    experiment = client.get_experiment_by_name(EXPERIMENT_NAME)
    if experiment is None:
        sys.exit(f"{tracking_uri()}: no experiment {EXPERIMENT_NAME!r}; run the pipeline first")
    run_ids = []
    for name in names:
        found = client.search_runs(
            [experiment.experiment_id],
            f"tags.`{TAG_PREFIX}kind` = 'pipeline' and attributes.run_name = '{name}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not found:
            sys.exit(f"no pipeline run named {name!r} (the DVC experiment name) in the store")
        run_ids.append(found[0].info.run_id)
    return experiment.experiment_id, run_ids


def wait_until_up(url: str, server: subprocess.Popen, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"mlflow server exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"mlflow server did not answer at {url} within {seconds:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="DVC experiment names (pipeline run names)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs/img/mlflow-compare.png")
    parser.add_argument("--size", default="1500,1720", help="window width,height in pixels")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("chromium not found: apt-get install chromium")
    experiment_id, run_ids = pipeline_runs(args.names)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as profile:
        server = subprocess.Popen(
            [
                sys.executable, "-m", "mlflow", "server",
                "--backend-store-uri", tracking_uri(),
                "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            wait_until_up(url, server)
            query = urllib.parse.urlencode(
                {"runs": json.dumps(run_ids), "experiments": json.dumps([experiment_id])}
            )
            page = f"{url}/#/compare-runs?{query}"
            args.out.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [
                    chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--hide-scrollbars", f"--user-data-dir={profile}",
                    f"--window-size={args.size}", "--virtual-time-budget=30000",
                    f"--screenshot={args.out.resolve()}", page,
                ],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=180,
            )  # fmt: skip
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"{args.out}: {', '.join(args.names)} ({', '.join(run_ids)})")


if __name__ == "__main__":
    main()
