"""How to read a source: its raw documents, streamed in order, one bounded piece at a time.

Local .txt (documents separated by blank lines), .jsonl (one object per line) and .parquet (one
row per document), each optionally .gz/.xz/.zst compressed, and Hugging Face hub datasets.
Bad input (not UTF-8, NUL bytes, a document over `max_document_chars`, a missing column, a
malformed JSON line, a truncated compressed file, a corrupt Parquet file, something that is not a
regular file) is a one-line `BertforgeError` naming the file and line or row.

pyarrow and datasets are imported inside the functions that need them: spawned workers import
this module (they unpickle `RawDocument`s), and those imports would cost each worker ~1 s of CPU
and ~90 MB of memory for nothing.
"""

from __future__ import annotations

import gzip
import lzma
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import zstandard

from bertforge.errors import BertforgeError
from bertforge.ingest.encodings import legacy_encoding_hint
from bertforge.ingest.sources import Source, check_regular_file
from bertforge.io import json_object_lines

if TYPE_CHECKING:
    import pyarrow.parquet as pq

READ_BLOCK_BYTES = 1 << 20
# compressed bytes fed to zstd per call: bounds one call's output (zstd expands at most ~32768x)
ZSTD_INPUT_BYTES = 8 << 10


class RawDocument(NamedTuple):
    source: str
    text: str


class ReadProgress:
    """Bytes read so far: on disk (for the progress bar) and after decompression."""

    def __init__(self) -> None:
        self.input_bytes_done = 0
        self.uncompressed_bytes = 0
        self.raw_documents = 0
        self.current_file: IO[bytes] | None = None

    @property
    def input_bytes(self) -> int:
        """On-disk bytes of finished files plus the position in the file being read."""
        current = self.current_file
        position = current.tell() if current is not None and not current.closed else 0
        return self.input_bytes_done + position


def read_documents(
    sources: Sequence[Source], max_document_chars: int, progress: ReadProgress | None = None
) -> Iterator[RawDocument]:
    """Stream the raw documents of all sources, in order, with bounded memory."""
    progress = progress or ReadProgress()
    for source in sources:
        if source.hub is not None:
            texts = read_hub(source, max_document_chars, progress)
        elif source.text_format == ".parquet":
            texts = read_parquet_file(source, max_document_chars, progress)
        else:
            texts = read_line_file(source, max_document_chars, progress)
        for text in texts:
            progress.raw_documents += 1
            yield RawDocument(source.name, text)


def open_compressed(raw: IO[bytes], compression: str) -> IO[bytes]:
    """A binary stream of the decompressed bytes of the open file `raw`."""
    if compression == ".gz":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if compression == ".xz":
        return lzma.LZMAFile(raw, mode="rb")
    if compression == ".zst":
        return ZstdFrames(raw)
    return raw


class ZstdFrames:
    """The decompressed bytes of a .zst stream, frame after frame, in bounded memory.

    A stream that ends inside a frame (a truncated file) raises `zstandard.ZstdError`:
    zstandard's own `stream_reader` stops at the cut without a word.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.decompressor = zstandard.ZstdDecompressor()
        self.frame: Any = None  # the frame being decompressed; None between frames
        self.buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        while (size < 0 or len(self.buffer) < size) and self._decompress_more():
            pass
        size = len(self.buffer) if size < 0 else min(size, len(self.buffer))
        chunk = bytes(self.buffer[:size])
        del self.buffer[:size]
        return chunk

    def _decompress_more(self) -> bool:
        data = self.raw.read(ZSTD_INPUT_BYTES)
        if not data:
            # the file must end where a frame ends
            if self.frame is not None:
                raise zstandard.ZstdError("truncated: the file ends inside a zstd frame")
            return False
        while data:
            if self.frame is None:
                self.frame = self.decompressor.decompressobj()
            self.buffer += self.frame.decompress(data)
            if not self.frame.eof:
                break
            data = self.frame.unused_data  # the next frame starts here
            self.frame = None
        return True


_DECOMPRESSION_ERRORS = (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError)


def read_line_file(
    source: Source, max_document_chars: int, progress: ReadProgress
) -> Iterator[str]:
    """Documents of a .txt (blank-line separated) or .jsonl (one object per line) file."""
    assert source.path is not None
    check_regular_file(source.path)  # a FIFO or device would block or never end
    with open(source.path, "rb") as raw:
        progress.current_file = raw
        try:
            stream = open_compressed(raw, source.compression)
            lines = iter_lines(stream, source.name, max_document_chars, progress)
            if source.text_format == ".txt":
                yield from txt_documents(lines, source.name, max_document_chars)
            else:
                yield from jsonl_documents(lines, source, max_document_chars)
        except _DECOMPRESSION_ERRORS as error:
            raise BertforgeError(
                f"{source.name}: cannot read: {error or type(error).__name__}"
            ) from None
        finally:
            progress.current_file = None
        progress.input_bytes_done += source.path.stat().st_size


def iter_lines(
    stream: IO[bytes], name: str, max_document_chars: int, progress: ReadProgress
) -> Iterator[tuple[int, str]]:
    """(line number, text without the newline) of a UTF-8 byte stream, with bounded memory.

    The stream is read in blocks of READ_BLOCK_BYTES and decoded up to the last newline of each.
    A line that grows past 12 × `max_document_chars` bytes (+64 KiB) without a newline is rejected
    before it is read whole: no character takes more than 4 bytes in UTF-8, nor more than 12 as a
    JSON escape, so such a line holds a document longer than `max_document_chars`.
    """
    max_line_bytes = 12 * max_document_chars + 65536
    line_number = 1  # of the first line in `pending`
    offset = 0  # byte offset of `pending` in the (decompressed) stream
    pending = b""
    while True:
        block = stream.read(READ_BLOCK_BYTES)
        progress.uncompressed_bytes += len(block)
        data = pending + block
        if not data:
            return
        end = data.rfind(b"\n") + 1 if block else len(data)
        if end == 0:
            if len(data) > max_line_bytes:
                raise BertforgeError(
                    f"{name}: line {line_number}: document longer than max_document_chars "
                    f"({max_document_chars}); the line has more than {max_line_bytes} bytes"
                )
            pending = data
            continue
        complete, pending = data[:end], data[end:]
        nul = complete.find(b"\0")
        if nul >= 0:
            bad_line = line_number + complete.count(b"\n", 0, nul)
            raise BertforgeError(
                f"{name}: line {bad_line}: NUL byte at byte offset {offset + nul}; "
                "expected UTF-8 text (a binary or UTF-16 file?)"
            )
        try:
            text = complete.decode("utf-8")
        except UnicodeDecodeError as error:
            bad_line = line_number + complete.count(b"\n", 0, error.start)
            raise BertforgeError(
                f"{name}: line {bad_line}: not valid UTF-8 at byte offset {offset + error.start}; "
                + legacy_encoding_hint(complete)
            ) from None
        lines = text.split("\n")  # not splitlines(): form feeds and U+2028 stay inside a line
        if text.endswith("\n"):
            lines.pop()
        for line in lines:
            yield line_number, line
            line_number += 1
        offset += end
        if not block:
            return


def txt_documents(
    lines: Iterable[tuple[int, str]], name: str, max_document_chars: int
) -> Iterator[str]:
    """Join lines into documents; whitespace-only lines separate documents."""
    document: list[str] = []
    chars = 0
    first_line = 0
    for number, line in lines:
        # a whitespace-only line ends a document
        if line.strip():
            if not document:
                first_line = number
            document.append(line)
            chars += len(line)
            # a document over max_document_chars is an error, not a drop
            if chars > max_document_chars:
                raise BertforgeError(
                    f"{name}: line {first_line}: document longer than max_document_chars "
                    f"({max_document_chars} characters)"
                )
        elif document:
            yield "\n".join(document)
            document, chars = [], 0
    if document:
        yield "\n".join(document)


def jsonl_documents(
    lines: Iterable[tuple[int, str]], source: Source, max_document_chars: int
) -> Iterator[str]:
    """The text column of each JSON object line; blank lines are skipped, null is empty text."""
    column = source.text_column
    for number, row in json_object_lines(lines, source.name):
        if column not in row:
            raise BertforgeError(
                f"{source.name}: line {number}: no column {column!r} "
                f"(has: {', '.join(sorted(row)) or 'nothing'}); set text_column"
            )
        yield checked_text(row[column], f"{source.name}: line {number}", column, max_document_chars)


def checked_text(value: Any, where: str, column: str, max_document_chars: int) -> str:
    """A text-column value as a string: null is empty text, anything but a string is an error."""
    # null is an empty document (dropped later as "empty")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BertforgeError(f"{where}: column {column!r} must be text, got {type(value).__name__}")
    # a document over max_document_chars is an error, not a drop
    if len(value) > max_document_chars:
        raise BertforgeError(
            f"{where}: document longer than max_document_chars ({max_document_chars} characters)"
        )
    return value


def read_parquet_file(
    source: Source, max_document_chars: int, progress: ReadProgress
) -> Iterator[str]:
    """The text column of a Parquet file, a record batch at a time.

    Parquet needs random access, so a compressed Parquet file is first decompressed into a
    temporary file (disk, not memory).
    """
    assert source.path is not None
    check_regular_file(source.path)  # a FIFO or device would block or never end
    with tempfile.TemporaryDirectory(prefix="bertforge-ingest-") as scratch:
        path = source.path
        if source.compression:
            path = Path(scratch) / "decompressed.parquet"
            try:
                with open(source.path, "rb") as raw, open(path, "wb") as out:
                    shutil.copyfileobj(open_compressed(raw, source.compression), out)
            except _DECOMPRESSION_ERRORS as error:
                raise BertforgeError(
                    f"{source.name}: cannot read: {error or type(error).__name__}"
                ) from None
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            # pages written with checksums are verified; a damaged page is an error, not garbage
            parquet = pq.ParquetFile(path, page_checksum_verification=True)
        except (pa.ArrowException, OSError) as error:
            raise BertforgeError(f"{source.name}: not a readable Parquet file: {error}") from None
        progress.uncompressed_bytes += path.stat().st_size
        with parquet:
            yield from parquet_texts(parquet, source, max_document_chars)
    progress.input_bytes_done += source.path.stat().st_size


def parquet_texts(
    parquet: pq.ParquetFile, source: Source, max_document_chars: int
) -> Iterator[str]:
    """The values of the text column, checked, a record batch at a time."""
    import pyarrow as pa

    column = source.text_column
    schema = parquet.schema_arrow
    if column not in schema.names:
        raise BertforgeError(
            f"{source.name}: no column {column!r} (has: {', '.join(schema.names)}); set text_column"
        )
    column_type = schema.field(column).type
    if not (pa.types.is_string(column_type) or pa.types.is_large_string(column_type)):
        raise BertforgeError(f"{source.name}: column {column!r} must be text, got {column_type}")
    row = 0
    batches = parquet.iter_batches(batch_size=1024, columns=[column])
    while True:
        try:
            batch = next(batches, None)
            if batch is None:
                return
            # pyarrow does not check that a string column holds UTF-8: a full validation does
            batch.column(0).validate(full=True)
            values = batch.column(0).to_pylist()
        except (pa.ArrowException, OSError, UnicodeDecodeError) as error:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise BertforgeError(
                f"{source.name}: corrupt Parquet data after row {row}: {first_line}"
            ) from None
        for value in values:
            row += 1
            yield checked_text(value, f"{source.name}: row {row}", column, max_document_chars)


def read_hub(source: Source, max_document_chars: int, progress: ReadProgress) -> Iterator[str]:
    """Stream a Hugging Face hub dataset split with `datasets.load_dataset(..., streaming=True)`.

    This needs network access (or the dataset in the local HF cache). Any failure to load or to
    stream becomes one line naming the dataset; the rows are documents.
    """
    import datasets  # imported here: heavy, and only hub sources need it

    entry = source.hub
    assert entry is not None
    column = source.text_column
    try:
        dataset = datasets.load_dataset(
            entry.hub, entry.config, split=entry.split or "train", streaming=True
        )
        rows = iter(dataset)
        for row_number, row in enumerate(rows, start=1):
            if column not in row:
                raise BertforgeError(
                    f"{source.name}: row {row_number}: no column {column!r} "
                    f"(has: {', '.join(sorted(row))}); set text_column"
                )
            text = checked_text(
                row[column], f"{source.name}: row {row_number}", column, max_document_chars
            )
            progress.uncompressed_bytes += len(text.encode("utf-8"))
            yield text
    except BertforgeError:
        raise
    except Exception as error:  # datasets raises many types: network, missing config, bad split
        first_line = (str(error).strip().splitlines() or [""])[0]
        split = entry.split or "train"
        raise BertforgeError(
            f"hub dataset {entry.hub!r} (config {entry.config!r}, split {split!r}): "
            f"cannot be streamed: {type(error).__name__}: {first_line} "
            "(hub sources need network access)"
        ) from None
