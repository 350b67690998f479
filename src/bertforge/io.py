"""Atomic outputs, content hashes and JSON files: the file side of every stage.

A stage writes into temporary siblings of its output and of its metrics file and renames both into
place only at the end, after the output passed its schema and both destinations were checked
writable: a failed or killed stage never leaves a half-written output, and a failure at any point
leaves the previous output and the previous metrics in place, together. Staging folders that a
killed run left behind are removed by the next run of the same stage.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bertforge.errors import BertforgeError


@contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces `final` when the block succeeds.

    For a stage's output and its metrics together, use `atomic_outputs`.
    """
    final = Path(final)
    prepare_destination(final)
    staging = staging_path(final)
    staging.mkdir()
    try:
        with disk_full_named(final):
            yield staging
        swap_together([(staging, final)])
    finally:
        remove_path(staging)


class StagedOutputs:
    """What a stage fills inside `atomic_outputs`: its output folder and its metrics."""

    def __init__(self, directory: Path | None, files: dict[Path, Path]) -> None:
        self.directory = directory  # the staging folder standing in for the output folder
        self.metrics: Any = None  # set by the stage; written as the metrics JSON at the swap
        self._files = files

    def path(self, final: Path) -> Path:
        """The staging path standing in for one of the extra `files` of `atomic_outputs`."""
        return self._files[Path(final)]


@contextmanager
def atomic_outputs(
    output_dir: Path | None, metrics_file: Path, files: Sequence[Path] = ()
) -> Iterator[StagedOutputs]:
    """Stage an output folder, its metrics JSON (and extra files); swap them all in, last.

    The block fills `staged.directory` (and `staged.path(f)` for each extra file) and sets
    `staged.metrics`. On success the metrics are written beside their destination, every
    destination is checked writable and the previous output removable, and then all are renamed
    into place, each rename undone if a later one fails. On any failure nothing previous changes
    and no staging file is left behind.
    """
    finals = [Path(path) for path in (output_dir, *files) if path is not None]
    metrics_file = Path(metrics_file)
    for final in [*finals, metrics_file]:
        prepare_destination(final)
    staged_files = {Path(final): staging_path(Path(final)) for final in files}
    directory = staging_path(Path(output_dir)) if output_dir is not None else None
    metrics_staging = staging_path(metrics_file)
    staging = [path for path in (directory, *staged_files.values(), metrics_staging) if path]
    try:
        if directory is not None:
            directory.mkdir()
        staged = StagedOutputs(directory, staged_files)
        with disk_full_named(Path(output_dir) if output_dir is not None else metrics_file):
            yield staged
        if staged.metrics is None:
            raise RuntimeError("atomic_outputs: the stage did not set staged.metrics")
        with disk_full_named(metrics_file):
            write_json(metrics_staging, staged.metrics)
        pairs = [(staging_path(final), final) for final in finals] + [
            (metrics_staging, metrics_file)
        ]
        for _, final in pairs:
            check_replaceable(final)
        swap_together(pairs)
    finally:
        for path in staging:
            remove_path(path)


def staging_path(final: Path) -> Path:
    """The temporary sibling this process writes `final` into: ``.<name>.tmp-<pid>``."""
    return final.parent / f".{final.name}.tmp-{os.getpid()}"


def retired_path(final: Path) -> Path:
    """Where the previous `final` waits during a swap: ``.<name>.old-<pid>``."""
    return final.parent / f".{final.name}.old-{os.getpid()}"


def prepare_destination(final: Path) -> None:
    """Make `final`'s folder, clean what dead runs left there, and check it is writable."""
    folder = final.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BertforgeError(
            f"{error.filename or folder}: cannot create the folder for {final}: "
            f"{os.strerror(error.errno) if error.errno else error}"
        ) from None
    # staging folders are removed only at the next run: a kill leaves them behind
    clean_dead_staging(final)
    if not os.access(folder, os.W_OK | os.X_OK, effective_ids=True):
        raise BertforgeError(f"{folder}: folder is not writable, cannot write {final}")


def clean_dead_staging(final: Path) -> None:
    """Remove the ``.<name>.tmp-<pid>`` and ``.<name>.old-<pid>`` of `final` left by dead runs.

    A run killed between retiring the previous output and renaming the new one leaves only
    ``.old-<pid>``: it is put back, since it is the last complete output.
    """
    pattern = re.compile(rf"\.{re.escape(final.name)}\.(tmp|old)-(\d+)")
    for leftover in sorted(final.parent.iterdir()):
        match = pattern.fullmatch(leftover.name)
        if match is None or pid_alive(int(match.group(2))):
            continue
        if match.group(1) == "old" and not (final.exists() or final.is_symlink()):
            os.replace(leftover, final)
        else:
            remove_path(leftover)


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs now (this process counts as alive)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_replaceable(final: Path) -> None:
    """The previous `final` can be removed: it and every folder inside it are writable."""
    if not final.is_dir() or final.is_symlink():
        return
    for folder, _, _ in os.walk(final):
        if not os.access(folder, os.W_OK | os.X_OK, effective_ids=True):
            raise BertforgeError(
                f"{folder}: folder is not writable, so the previous {final} cannot be replaced; "
                "the previous output and metrics are unchanged"
            )


def swap_together(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Rename each staged path onto its final path, all or none, then drop the previous ones.

    If a rename fails, those already made are undone (the new back to staging, the previous
    back in place), so the previous outputs stay together.
    """
    done: list[tuple[Path, Path, Path | None]] = []
    try:
        for staged, final in pairs:
            retired = None
            if final.exists() or final.is_symlink():
                retired = retired_path(final)
                os.replace(final, retired)
            try:
                os.replace(staged, final)
            except BaseException:
                if retired is not None:
                    os.replace(retired, final)
                raise
            done.append((staged, final, retired))
    except OSError as error:
        undo_swaps(done)
        raise BertforgeError(
            f"{error.filename or pairs[len(done)][1]}: cannot be replaced: "
            f"{os.strerror(error.errno) if error.errno else error}; "
            "the previous outputs and metrics are unchanged"
        ) from None
    except BaseException:
        undo_swaps(done)
        raise
    for _, _, retired in done:
        if retired is not None:
            remove_path(retired)


def undo_swaps(done: Sequence[tuple[Path, Path, Path | None]]) -> None:
    """Put back what `swap_together` renamed, newest first."""
    for staged, final, retired in reversed(done):
        os.replace(final, staged)
        if retired is not None:
            os.replace(retired, final)


def replace_path(source: Path, final: Path) -> None:
    """Move `source` to `final`, replacing a previous file or directory there."""
    swap_together([(Path(source), Path(final))])


def remove_path(path: Path) -> None:
    """Remove a file, link or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


# below this many free bytes, a failed write is taken to be a full disk
NEARLY_FULL_BYTES = 1 << 20


def is_disk_full(error: BaseException, folder: Path | None = None) -> bool:
    """Whether `error` comes from a full disk.

    ENOSPC, or a message saying so (pyarrow, safetensors); torch.save and numpy report a short
    write without the reason, so when `folder` is given, a failed write on a file system with
    (almost) no space left counts too.
    """
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    if "No space left on device" in str(error):
        return True
    if folder is None or not isinstance(error, OSError | RuntimeError):
        return False
    try:
        return shutil.disk_usage(folder).free < NEARLY_FULL_BYTES
    except OSError:
        return False


@contextmanager
def disk_full_named(target: Path) -> Iterator[None]:
    """Turn a full disk inside the block into one line naming what was being written."""
    try:
        yield
    except Exception as error:
        folder = target if target.is_dir() else target.parent
        if is_disk_full(error, folder):
            raise BertforgeError(
                f"disk full (no space left on device) while writing {target}"
            ) from None
        raise


def write_json(path: Path, payload: Any) -> None:
    """Write `payload` as sorted, indented JSON (no rename: for staging paths)."""
    Path(path).write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write `payload` as sorted, indented JSON through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(path)
    try:
        with disk_full_named(path):
            write_json(staging, payload)
        os.replace(staging, path)
    finally:
        remove_path(staging)


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


def utf8_lines(path: Path, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """(line number, text) of each line of a text file, newline kept, read one line at a time.

    A line that is not valid in `encoding` (e.g. a latin-1 line in a UTF-8 file) is a one-line
    `BertforgeError` naming the file and the line; "utf-8-sig" drops a BOM on the first line.
    """
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode(encoding if number == 1 else "utf-8")
            except UnicodeDecodeError as error:
                raise BertforgeError(
                    f"{path}: line {number}: not valid UTF-8 at byte {error.start} of the line"
                ) from None


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
        except RecursionError:
            raise BertforgeError(
                f"{where}: line {number}: malformed JSON: nested too deeply"
            ) from None
        if not isinstance(row, dict):
            raise BertforgeError(
                f"{where}: line {number}: expected a JSON object, got {type(row).__name__}"
            )
        yield number, row
