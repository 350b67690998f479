"""Every bad input is one line naming the file and line: JSON nested far too deep, a latin-1
line in a task file, an OSError from the operating system about a file, a full disk."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

from bertforge.errors import BertforgeError
from bertforge.finetune.glue import GLUE_TASKS, read_glue_tsv
from bertforge.finetune.tasks import read_jsonl
from bertforge.io import json_object_lines, read_json
from bertforge.stage import describe_os_error

DEEP = "[" * 200_000 + "]" * 200_000


def test_json_nested_200k_deep_in_a_jsonl_line_is_one_line():
    lines = [(1, '{"text": "fine"}'), (2, DEEP)]
    with pytest.raises(BertforgeError) as raised:
        list(json_object_lines(lines, "corpus/deep.jsonl"))
    assert str(raised.value) == "corpus/deep.jsonl: line 2: malformed JSON: nested too deeply"


def test_a_json_file_nested_200k_deep_is_one_line(tmp_path):
    path = tmp_path / "meta.json"
    path.write_text(DEEP)
    with pytest.raises(BertforgeError) as raised:
        read_json(path)
    assert str(raised.value) == f"{path}: not valid JSON: nested too deeply"


def test_a_latin1_line_in_a_jsonl_task_file_names_file_and_line(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"text": "fine", "label": "a"}\n{"text": "caf\xe9", "label": "b"}\n')
    with pytest.raises(BertforgeError) as raised:
        list(read_jsonl(path))
    assert str(raised.value) == f"{path}: line 2: not valid UTF-8 at byte 13 of the line"


def test_a_latin1_line_in_a_glue_tsv_names_file_and_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes("\ufeffsentence\tlabel\nfine\t1\n".encode() + b"caf\xe9\t0\n")
    with pytest.raises(BertforgeError) as raised:
        list(read_glue_tsv(path, GLUE_TASKS["sst2"]))
    assert str(raised.value) == f"{path}: line 3: not valid UTF-8 at byte 3 of the line"


def test_a_glue_tsv_with_a_bom_still_reads(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_bytes("\ufeffsentence\tlabel\nfine\t1\n".encode())
    ((line, record),) = read_glue_tsv(path, GLUE_TASKS["sst2"])
    assert line == 2 and record["sentence"] == "fine"


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "data/.x.tmp-1/shard.parquet"),
         "disk full (no space left on device) while writing data/.x.tmp-1/shard.parquet"),
        (OSError(errno.EROFS, "Read-only file system", "data"), "data: read-only file system"),
        (PermissionError(errno.EACCES, "Permission denied", "corpus/a.txt"),
         "corpus/a.txt: permission denied (not readable or not writable by this user)"),
    ],
)  # fmt: skip
def test_os_errors_about_a_file_become_one_line(error, line):
    assert describe_os_error(error) == line


def test_a_stage_script_turns_an_os_error_into_exit_2_and_one_line(tmp_path):
    script = (
        "from bertforge.stage import run_stage\n"
        "def main():\n"
        f"    open({str(tmp_path / 'missing' / 'out.json')!r}, 'w')\n"
        "run_stage(main)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'missing' / 'out.json'}: no such file or directory"
    )
    assert len(result.stderr.strip().splitlines()) == 1
