"""Atomic outputs, content hashes and JSON files: the file side of every stage.

A stage writes into a temporary sibling of its output and renames it into place only after the
output passed its schema, so a failed or killed stage never leaves a half-written output and the
previous output stays as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bertforge.errors import BertforgeError


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces `final` when the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    replace_path(staging, final)


def replace_path(source: Path, final: Path) -> None:
    """Move `source` to `final`, replacing a previous file or directory there."""
    retired = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists() or final.is_symlink():
        os.replace(final, retired)
    os.replace(source, final)
    if retired.is_dir() and not retired.is_symlink():
        shutil.rmtree(retired)
    elif retired.exists() or retired.is_symlink():
        retired.unlink()


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write `payload` as sorted, indented JSON through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.parent / f".{path.name}.tmp-{os.getpid()}"
    staging.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(staging, path)


def read_json(path: Path, producer: str | None = None) -> Any:
    """A JSON file the pipeline wrote; missing, unreadable or malformed is one line naming it.

    `producer` names the stage that writes the file, so a missing file says which to run.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = f"; run the {producer} stage first" if producer else ""
        raise BertforgeError(f"{path}: not found{hint}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BertforgeError(f"{path}: cannot be read: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise BertforgeError(f"{path}: not valid JSON: {error.msg} (line {error.lineno})") from None
    except RecursionError:
        raise BertforgeError(f"{path}: not valid JSON: nested too deeply") from None


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of one file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_path(path: Path) -> str:
    """Content hash (sha256 hex) of a file, or of a directory's relative paths and file bytes."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        files = [path]
        root = path.parent
    else:
        files = sorted(p for p in path.rglob("*") if p.is_file())
        root = path
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def json_object_lines(
    lines: Iterable[tuple[int, str]], where: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each JSON-lines line; blank lines are skipped.

    A line that is not valid JSON, or not a JSON object, is a one-line `BertforgeError` naming
    `where` (a file) and the line.
    """
    for number, line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise BertforgeError(
                f"{where}: line {number}: malformed JSON: {error.msg} (column {error.colno})"
            ) from None
        if not isinstance(row, dict):
            raise BertforgeError(
                f"{where}: line {number}: expected a JSON object, got {type(row).__name__}"
            )
        yield number, row
