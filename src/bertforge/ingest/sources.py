"""What to read: the `ingest.sources` entries resolved into files (globs expanded) and hub splits.

A missing path, a glob that matches nothing or an unknown file type fails here, before anything
is read. How each kind of source is read is in `bertforge.ingest.readers`.
"""

from __future__ import annotations

import glob
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from bertforge.errors import BertforgeError
from bertforge.ingest.params import IngestParams, SourceParams

TEXT_FORMATS = (".txt", ".jsonl", ".parquet")
COMPRESSIONS = (".gz", ".xz", ".zst")


@dataclass(frozen=True)
class Source:
    """A resolved source: one local file, or one hub dataset split."""

    name: str  # the `source` column: the file path as globbed, or hub:<name>/<config>:<split>
    text_column: str
    path: Path | None = None  # local file
    text_format: str = ""  # .txt, .jsonl or .parquet
    compression: str = ""  # "", .gz, .xz or .zst
    hub: SourceParams | None = None


def resolve_sources(params: IngestParams) -> list[Source]:
    """Expand every source entry into files (globs sorted) or a hub source; fail on a missing path.

    Relative paths and globs are relative to the working directory (the repo root for stages).
    """
    resolved: list[Source] = []
    for index, entry in enumerate(params.sources):
        # a source's own text_column overrides ingest.text_column
        column = entry.text_column or params.text_column
        if entry.hub is not None:
            split = entry.split or "train"
            name = f"hub:{entry.hub}" + (f"/{entry.config}" if entry.config else "") + f":{split}"
            resolved.append(Source(name=name, text_column=column, hub=entry))
            continue
        pattern = str(entry.path)
        where = f"params.yaml: ingest.sources[{index}].path"
        if glob.has_magic(pattern):
            # a glob reads its files in sorted order, so the output does not depend on the disk
            matches = sorted(glob.glob(pattern, recursive=True))
            # folders matched by a glob are skipped; anything else must be a regular file
            files = [Path(match) for match in matches if not Path(match).is_dir()]
            if not files:
                raise BertforgeError(f"{where}: no file matches {pattern!r}")
        else:
            path = Path(pattern)
            if not path.exists():
                raise BertforgeError(f"{pattern}: file not found ({where})")
            if path.is_dir():
                raise BertforgeError(
                    f"{pattern}: is a directory; use a glob such as {pattern}/*.txt"
                )
            files = [path]
        for path in files:
            check_regular_file(path)
            text_format, compression = file_format(path)
            resolved.append(
                Source(
                    name=path.as_posix(),
                    text_column=column,
                    path=path,
                    text_format=text_format,
                    compression=compression,
                )
            )
    return resolved


def check_regular_file(path: Path) -> None:
    """A source must be a regular file (or a link to one): a FIFO or device blocks or never ends.

    Checked with `os.stat`, which never blocks, before the file is opened.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise BertforgeError(f"{path}: file not found") from None
    except OSError as error:
        raise BertforgeError(f"{path}: cannot be read: {os.strerror(error.errno or 0)}") from None
    if not stat.S_ISREG(mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "not a regular file"
        raise BertforgeError(f"{path}: is {kind}; a source must be a regular file")


def file_format(path: Path) -> tuple[str, str]:
    """(text format, compression) from the file name, e.g. ``a.jsonl.zst`` → (.jsonl, .zst)."""
    suffixes = [suffix.lower() for suffix in path.suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in COMPRESSIONS else ""
    text_format = suffixes[-1] if suffixes else ""
    if text_format not in TEXT_FORMATS:
        raise BertforgeError(
            f"{path}: unsupported file type (expected {', '.join(TEXT_FORMATS)}, "
            f"optionally compressed {', '.join(COMPRESSIONS)})"
        )
    return text_format, compression
