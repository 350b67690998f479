"""stages/examples.py with jieba whole-word masking: it runs on Chinese, and a segmenter for
another language or a missing jieba fails in one line, exit 2, leaving the examples intact."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from bertforge.examples.meta import read_meta
from bertforge.io import hash_path
from tests.support import REPO_ROOT, stage_env

STAGE = REPO_ROOT / "stages/examples.py"
HIDE_JIEBA = (
    "import runpy, sys; sys.modules['jieba'] = None; "
    f"runpy.run_path({str(STAGE)!r}, run_name='__main__')"
)


def run_stage(cwd: Path, hide_jieba: bool = False) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", HIDE_JIEBA] if hide_jieba else [sys.executable, str(STAGE)]
    return subprocess.run(
        command, cwd=cwd, env=stage_env(), capture_output=True, text=True, timeout=300
    )


def write_params(root: Path, language: str) -> None:
    examples = {"whole_word_mask": True, "word_segmenter": "jieba", "negative_pool_size": 40,
                "num_proc": 1, "dupe_factor": 1}  # fmt: skip
    params = {"ingest": {"language": language}, "examples": examples}
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")


@pytest.mark.slow
def test_jieba_examples_then_bad_segmenter_settings_fail_in_one_line_leaving_them_intact(
    chinese_project: Path, tmp_path: Path
) -> None:
    shutil.copytree(chinese_project / "data", tmp_path / "data")
    write_params(tmp_path, "zh")
    first = run_stage(tmp_path)
    assert first.returncode == 0, first.stderr
    assert read_meta(tmp_path / "data/examples")["word_segmenter"] == "jieba"
    before = hash_path(tmp_path / "data/examples")

    write_params(tmp_path, "en")
    failed = run_stage(tmp_path)
    assert failed.returncode == 2
    assert failed.stderr.strip() == (
        "error: params.yaml: examples.word_segmenter jieba segments ingest.language zh, "
        "not 'en' (set examples.word_segmenter: none)"
    )
    assert hash_path(tmp_path / "data/examples") == before

    write_params(tmp_path, "zh")
    failed = run_stage(tmp_path, hide_jieba=True)
    assert failed.returncode == 2
    assert failed.stderr.strip() == (
        "error: params.yaml: examples.word_segmenter is jieba, which is not installed "
        "(pip install 'bertforge[zh]')"
    )
    assert hash_path(tmp_path / "data/examples") == before
