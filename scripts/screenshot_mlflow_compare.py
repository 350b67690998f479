"""Screenshot the MLflow UI comparing pipeline runs (docs/img/mlflow-compare.png).

Usage:
    dvc exp run -n lr-2e-4 -S finetune.learning_rate=0.0002
    dvc exp run -n batch-32 -S finetune.batch_size=32
    python scripts/screenshot_mlflow_compare.py lr-2e-4 batch-32 [--out docs/img/mlflow-compare.png]

Finds the pipeline runs (tag ``bertforge.kind = pipeline``) named after the given DVC
experiments in the project's MLflow store, starts `mlflow server` on 127.0.0.1 with that store,
opens its compare view of those runs in headless Chromium (Debian's `chromium` package), closes
the assistant panel, turns on "Show diff only" for params and metrics, and saves the
screenshot. Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`,
stdlib only). Nothing in the store is changed.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
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


class DevTools:
    """Chromium's DevTools protocol over `--remote-debugging-pipe` (fds 3/4, NUL-framed JSON)."""

    def __init__(self, chromium: str, profile: str, width: int, height: int) -> None:
        commands_read, self._commands = os.pipe()
        self._events, events_write = os.pipe()

        def child_fds() -> None:
            os.dup2(commands_read, 3)
            os.dup2(events_write, 4)

        self.process = subprocess.Popen(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                "--remote-debugging-pipe", f"--user-data-dir={profile}",
                f"--window-size={width},{height}", "about:blank",
            ],
            close_fds=False,  # the pipes must reach fds 3 and 4 of the child
            preexec_fn=child_fds,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(commands_read)
        os.close(events_write)
        self._buffer, self._next_id, self.session = b"", 0, None

    def send(self, method: str, **params: object) -> dict:
        """Send one command (to the attached page, once there is one) and wait for its reply."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self.session is not None and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._commands, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._events, 1 << 20)
                if not chunk:
                    sys.exit("chromium exited before answering")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    sys.exit(f"chromium: {method}: {reply['error'].get('message')}")
                return reply["result"]

    def evaluate(self, expression: str) -> object:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def close(self) -> None:
        try:
            self.send("Browser.close")
        finally:
            self.process.wait(timeout=30)


CLICK = "for (const b of document.querySelectorAll('button[aria-label=\"{label}\"]')) {{ {then} }}"


def screenshot(chromium: str, profile: str, page: str, width: int, height: int) -> bytes:
    """The compare page as PNG: assistant panel closed, params and metrics as diff only."""
    browser = DevTools(chromium, profile, width, height)
    try:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        browser.session = browser.send("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        browser.send(
            "Emulation.setDeviceMetricsOverride",
            width=width, height=height, deviceScaleFactor=1, mobile=False,
        )  # fmt: skip
        browser.send("Page.navigate", url=page)
        deadline = time.monotonic() + 60
        while not browser.evaluate("document.body.innerText.includes('Comparing')"):
            if time.monotonic() > deadline:
                sys.exit(f"{page}: the compare view did not render within 60 s")
            time.sleep(0.5)
        time.sleep(3)  # charts and tables finish rendering
        browser.evaluate(CLICK.format(label="Close", then="b.click();"))
        for section in ("Parameters", "Metrics"):
            label = f"{section} - Show diff only"
            then = "if (b.getAttribute('aria-checked') === 'false') b.click();"
            browser.evaluate(CLICK.format(label=label, then=then))
        time.sleep(2)
        return base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
    finally:
        browser.close()


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
            width, height = (int(v) for v in args.size.split(","))
            png = screenshot(chromium, profile, page, width, height)
            args.out.write_bytes(png)
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"{args.out}: {', '.join(args.names)} ({', '.join(run_ids)})")


if __name__ == "__main__":
    main()
