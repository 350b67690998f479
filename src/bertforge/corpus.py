"""Ingest: raw text sources → cleaned, sentence-split, deduplicated documents, split train/held-out.

The steps, in the order a document meets them:

1. `read_documents` streams the documents of every source in order (local .txt/.jsonl/.parquet,
   optionally .gz/.xz/.zst compressed, or a Hugging Face hub dataset), one bounded piece at a time.
   Bad input (not UTF-8, NUL bytes, a document over `max_document_chars`, a missing column, a
   malformed JSON line) is a one-line `BertforgeError` naming the file and line or row.
2. `clean_text`: remove control and format characters, normalize to NFC, collapse whitespace.
3. Split into sentences with the chosen splitter (`make_sentence_splitter`: sentencex, chosen in
   benchmarks/bench_sentence_splitters.py; see docs/ingest.md).
4. Drop documents that are empty, too short or have too few sentences.
5. Drop exact duplicates: the first occurrence (in source order) of each cleaned text wins.
6. Hold out a document iff a salted hash of its id falls below `holdout_fraction`.

Steps 2–4 and 6 depend on the document alone and run in `num_proc` worker processes on batches of
documents; results come back in order, so the output is byte-identical for any `num_proc`. Steps 1
and 5 run in the main process. Nothing holds the corpus in memory: only the 8-byte digests of the
kept documents accumulate (`SeenDigests`).
"""

from __future__ import annotations

import functools
import glob
import gzip
import hashlib
import itertools
import lzma
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import numpy as np
import sentencex
import zstandard
from tqdm import tqdm

from bertforge.errors import BertforgeError
from bertforge.io import json_object_lines
from bertforge.parallel import ordered_parallel_map
from bertforge.params import require

if TYPE_CHECKING:
    import pyarrow.parquet as pq

# pyarrow, pandas and pandera (via bertforge.shards/schemas) are imported inside the functions of
# the main process that use them: every spawned worker imports this module, and those imports
# would cost each worker ~1 s of CPU and ~90 MB of memory for nothing.

DROP_REASONS = ("empty", "too_short", "too_few_sentences", "duplicate")
TEXT_FORMATS = (".txt", ".jsonl", ".parquet")
COMPRESSIONS = (".gz", ".xz", ".zst")
SENTENCE_SPLITTER = "sentencex"  # chosen in benchmarks/bench_sentence_splitters.py

# A batch sent to a worker holds at most this many documents or characters (bounded memory).
BATCH_DOCUMENTS = 512
BATCH_CHARACTERS = 4_000_000
READ_BLOCK_BYTES = 1 << 20
ROW_GROUP_DOCUMENTS = 1000
"""Documents per Parquet row group of data/ingested: a reader can decode a range of documents
(the examples stage's work units, 1,000 documents by default) without their neighbours."""


# --- params ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceParams:
    """One entry of `ingest.sources`: a local file or glob (`path`) or a hub dataset (`hub`)."""

    path: str | None = None
    hub: str | None = None
    config: str | None = None
    split: str | None = None
    text_column: str | None = None

    def __post_init__(self) -> None:
        given = {"path": self.path, "hub": self.hub}
        require(
            (self.path is None) != (self.hub is None),
            "path",
            "or hub: exactly one is needed",
            given,
        )
        require(self.path != "", "path", "must not be empty", self.path)
        require(self.hub != "", "hub", "must not be empty", self.hub)
        require(
            self.hub is not None or (self.config is None and self.split is None),
            "config",
            "and split apply only to hub sources",
            {"config": self.config, "split": self.split},
        )
        require(self.text_column != "", "text_column", "must not be empty", self.text_column)


@dataclass(frozen=True)
class IngestParams:
    """The `ingest:` section of params.yaml (see docs/ingest.md for each key)."""

    sources: tuple[SourceParams, ...]
    text_column: str
    min_document_chars: int
    min_sentences: int
    max_document_chars: int
    language: str
    holdout_fraction: float
    seed: int
    num_proc: int
    rows_per_shard: int

    def __post_init__(self) -> None:
        require(len(self.sources) > 0, "sources", "must list at least one source", self.sources)
        require(self.text_column != "", "text_column", "must not be empty", self.text_column)
        require(
            self.min_document_chars >= 0,
            "min_document_chars",
            "must be >= 0",
            self.min_document_chars,
        )
        require(self.min_sentences >= 1, "min_sentences", "must be >= 1", self.min_sentences)
        require(
            self.max_document_chars >= max(1, self.min_document_chars),
            "max_document_chars",
            "must be >= 1 and >= min_document_chars",
            self.max_document_chars,
        )
        require(self.language != "", "language", "must not be empty", self.language)
        require(
            0.0 < self.holdout_fraction < 1.0,
            "holdout_fraction",
            "must be in (0, 1)",
            self.holdout_fraction,
        )
        require(self.seed >= 0, "seed", "must be >= 0", self.seed)
        require(self.num_proc >= 1, "num_proc", "must be >= 1", self.num_proc)
        require(self.rows_per_shard >= 1, "rows_per_shard", "must be >= 1", self.rows_per_shard)


# --- sources -----------------------------------------------------------------------------------


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
        column = entry.text_column or params.text_column
        if entry.hub is not None:
            split = entry.split or "train"
            name = f"hub:{entry.hub}" + (f"/{entry.config}" if entry.config else "") + f":{split}"
            resolved.append(Source(name=name, text_column=column, hub=entry))
            continue
        pattern = str(entry.path)
        where = f"params.yaml: ingest.sources[{index}].path"
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern, recursive=True))
            files = [Path(match) for match in matches if Path(match).is_file()]
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
        return zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)
    return raw


_DECOMPRESSION_ERRORS = (OSError, EOFError, lzma.LZMAError, zstandard.ZstdError)


def read_line_file(
    source: Source, max_document_chars: int, progress: ReadProgress
) -> Iterator[str]:
    """Documents of a .txt (blank-line separated) or .jsonl (one object per line) file."""
    assert source.path is not None
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
                f"{name}: line {bad_line}: not valid UTF-8 at byte offset {offset + error.start}"
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
        if line.strip():
            if not document:
                first_line = number
            document.append(line)
            chars += len(line)
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
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BertforgeError(f"{where}: column {column!r} must be text, got {type(value).__name__}")
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
            parquet = pq.ParquetFile(path)
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
    for batch in parquet.iter_batches(batch_size=1024, columns=[column]):
        for value in batch.column(0).to_pylist():
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


# --- cleaning and sentence splitting -----------------------------------------------------------


def is_removed_character(character: str) -> bool:
    """Control characters that are not whitespace, format characters, surrogates and U+FFFD.

    Whitespace controls (tab, newline, CR, …) are left to `collapse_whitespace`, which turns them
    into spaces. Format characters (Cf: zero-width space/joiners, soft hyphen, BOM, bidi marks)
    are removed as BERT's own tokenizer does, so the vocabulary sees what the model will see.
    """
    if character == "\ufffd":
        return True
    return unicodedata.category(character) in ("Cc", "Cf", "Cs") and not character.isspace()


class _RemovalTable(dict):
    """A `str.translate` table filled on first sight: removed characters → None, others → self."""

    def __missing__(self, code: int) -> int | None:
        self[code] = None if is_removed_character(chr(code)) else code
        return self[code]


_REMOVAL_TABLE = _RemovalTable()


def remove_control_characters(text: str) -> str:
    return text.translate(_REMOVAL_TABLE)


def normalize_unicode(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def collapse_whitespace(text: str) -> str:
    """One space between words; every Unicode whitespace (tab, newline, NBSP, …) counts."""
    return " ".join(text.split())


def clean_document(text: str) -> tuple[str, int]:
    """The cleaned text of a document and how many characters were removed from it.

    The result is collapse_whitespace(normalize_unicode(remove_control_characters(text))),
    computed in an order that skips the slow character scan for the usual document: once
    whitespace is collapsed, a text that `isprintable()` and has no U+FFFD has nothing to remove.
    (Removal only deletes non-whitespace characters, and NFC neither creates nor composes
    whitespace, so the order does not change the result.)
    """
    text = collapse_whitespace(text)
    removed = 0
    if not text.isprintable() or "\ufffd" in text:
        kept = remove_control_characters(text)
        removed = len(text) - len(kept)
        text = collapse_whitespace(kept)
    return normalize_unicode(text), removed


def clean_text(text: str) -> str:
    """The cleaned text of a document: what is hashed, filtered and split into sentences."""
    return clean_document(text)[0]


SentenceSplitter = Callable[[str], list[str]]


def sentencex_splitter(language: str) -> SentenceSplitter:
    """Rule-based splitter of Wikimedia's sentencex (Rust), with per-language abbreviations."""

    def split(text: str) -> list[str]:
        return [
            sentence for piece in sentencex.segment(language, text) if (sentence := piece.strip())
        ]

    return split


def spacy_splitter(language: str) -> SentenceSplitter:
    """spaCy's rule-based `sentencizer` on a blank pipeline (no model download)."""
    import spacy  # optional (the `bench` extra): only needed when this splitter is chosen

    nlp = spacy.blank(language)
    nlp.add_pipe("sentencizer")
    nlp.max_length = 10**8

    def split(text: str) -> list[str]:
        return [sentence for span in nlp(text).sents if (sentence := span.text.strip())]

    return split


SENTENCE_SPLITTERS: dict[str, Callable[[str], SentenceSplitter]] = {
    "sentencex": sentencex_splitter,
    "spacy": spacy_splitter,
}


@functools.cache
def make_sentence_splitter(name: str, language: str) -> SentenceSplitter:
    """The splitter `name` for `language`, built once per process."""
    return SENTENCE_SPLITTERS[name](language)


def document_id(cleaned_text: str) -> str:
    """First 16 hex digits of the sha256 of the cleaned text: the dedup and split key."""
    return hashlib.sha256(cleaned_text.encode("utf-8")).hexdigest()[:16]


def is_held_out(doc_id: str, seed: int, holdout_fraction: float) -> bool:
    """Held out iff the first 8 bytes of sha256(f"{seed}:{doc_id}") / 2**64 < holdout_fraction.

    Depends on the document alone, so the split does not change with order, batching or num_proc,
    and a document keeps its side when others are added.
    """
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < holdout_fraction


# --- per-document processing (runs in the workers) ---------------------------------------------


@dataclass(frozen=True)
class DocumentRules:
    """What a worker needs to turn a raw document into a kept document or a drop reason."""

    min_document_chars: int
    min_sentences: int
    language: str
    holdout_fraction: float
    seed: int
    splitter: str = SENTENCE_SPLITTER

    @classmethod
    def from_params(cls, params: IngestParams) -> DocumentRules:
        return cls(
            min_document_chars=params.min_document_chars,
            min_sentences=params.min_sentences,
            language=params.language,
            holdout_fraction=params.holdout_fraction,
            seed=params.seed,
        )


class CleanedDocument(NamedTuple):
    doc_id: str
    source: str
    sentences: list[str]
    held_out: bool
    characters: int


@dataclass
class BatchResult:
    documents: list[CleanedDocument]
    dropped: dict[str, int]
    characters_removed: int


def process_batch(batch: list[RawDocument], rules: DocumentRules) -> BatchResult:
    """Clean, filter, split and assign a side to each document of a batch, in order."""
    split_sentences = make_sentence_splitter(rules.splitter, rules.language)
    documents: list[CleanedDocument] = []
    dropped = dict.fromkeys(DROP_REASONS, 0)
    characters_removed = 0
    for source, raw_text in batch:
        text, removed = clean_document(raw_text)
        characters_removed += removed
        if not text:
            dropped["empty"] += 1
            continue
        if len(text) < rules.min_document_chars:
            dropped["too_short"] += 1
            continue
        sentences = split_sentences(text)
        if len(sentences) < rules.min_sentences:
            dropped["too_few_sentences"] += 1
            continue
        doc_id = document_id(text)
        held_out = is_held_out(doc_id, rules.seed, rules.holdout_fraction)
        documents.append(CleanedDocument(doc_id, source, sentences, held_out, len(text)))
    return BatchResult(documents, dropped, characters_removed)


def batch_documents(documents: Iterable[RawDocument]) -> Iterator[list[RawDocument]]:
    """Consecutive batches of at most BATCH_DOCUMENTS documents or BATCH_CHARACTERS characters."""
    batch: list[RawDocument] = []
    characters = 0
    for document in documents:
        batch.append(document)
        characters += len(document.text)
        if len(batch) >= BATCH_DOCUMENTS or characters >= BATCH_CHARACTERS:
            yield batch
            batch, characters = [], 0
    if batch:
        yield batch


# --- dedup -------------------------------------------------------------------------------------


class SeenDigests:
    """A growing set of 64-bit digests at ~8 bytes each (a Python set costs ~70 bytes an entry).

    Digests live in sorted numpy runs whose sizes more than halve from one run to the next (like a
    binary counter), so a lookup is a few binary searches and each digest is merged O(log n) times.
    """

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs)

    def add_first_occurrences(self, digests: np.ndarray) -> np.ndarray:
        """Mark which digests (in order) were not seen before, neither earlier nor in this batch;
        add them."""
        digests = np.asarray(digests, dtype=np.uint64)
        is_first = np.zeros(len(digests), dtype=bool)
        if len(digests) == 0:
            return is_first
        _, first_positions = np.unique(digests, return_index=True)
        is_first[first_positions] = True
        for run in self._runs:
            positions = np.minimum(np.searchsorted(run, digests), len(run) - 1)
            is_first &= run[positions] != digests
        new_run = np.sort(digests[is_first])
        if len(new_run) == 0:
            return is_first
        while self._runs and len(self._runs[-1]) <= len(new_run):
            # timsort ("stable") merges two sorted runs in linear time
            new_run = np.sort(np.concatenate([self._runs.pop(), new_run]), kind="stable")
        self._runs.append(new_run)
        return is_first


# --- the whole stage ---------------------------------------------------------------------------


@dataclass
class IngestCounts:
    """Running totals for metrics/ingest.json; sentence lengths as histograms (bounded memory)."""

    train: int = 0
    heldout: int = 0
    sentences: int = 0
    characters: int = 0
    characters_removed: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    sentence_chars: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sentence_words: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def add_batch(self, result: BatchResult, kept: list[CleanedDocument]) -> None:
        """Count a processed batch whose non-duplicate documents are `kept`."""
        for reason, number in result.dropped.items():
            self.dropped[reason] += number
        self.dropped["duplicate"] += len(result.documents) - len(kept)
        self.characters_removed += result.characters_removed
        self.add_kept(kept)

    def add_kept(self, documents: list[CleanedDocument]) -> None:
        held_out = sum(document.held_out for document in documents)
        self.heldout += held_out
        self.train += len(documents) - held_out
        self.characters += sum(document.characters for document in documents)
        sentences = [sentence for document in documents for sentence in document.sentences]
        self.sentences += len(sentences)
        # whitespace is collapsed, so a sentence has one more word than it has spaces
        words = [count + 1 for count in map(str.count, sentences, itertools.repeat(" "))]
        self.sentence_chars = add_to_histogram(self.sentence_chars, list(map(len, sentences)))
        self.sentence_words = add_to_histogram(self.sentence_words, words)


def add_to_histogram(histogram: np.ndarray, values: list[int]) -> np.ndarray:
    """`histogram` (counts by value) plus the counts of `values`, grown as needed."""
    counts = np.bincount(np.asarray(values, dtype=np.int64), minlength=len(histogram))
    counts[: len(histogram)] += histogram
    return counts


def length_summary(histogram: np.ndarray) -> dict[str, float]:
    """min, mean, p50, p90, p99 and max of a histogram (counts by length)."""
    total = int(histogram.sum())
    if total == 0:
        return {"max": 0, "mean": 0.0, "min": 0, "p50": 0, "p90": 0, "p99": 0}
    lengths = np.flatnonzero(histogram)
    cumulative = np.cumsum(histogram)
    summary: dict[str, float] = {
        "max": int(lengths[-1]),
        "mean": round(float(np.dot(np.arange(len(histogram)), histogram)) / total, 2),
        "min": int(lengths[0]),
    }
    for name, quantile in (("p50", 0.50), ("p90", 0.90), ("p99", 0.99)):
        summary[name] = int(np.searchsorted(cumulative, quantile * total))
    return summary


def drop_duplicates(documents: list[CleanedDocument], seen: SeenDigests) -> list[CleanedDocument]:
    """The documents whose cleaned text was not seen before (earlier batches or this one)."""
    digests = np.array([int(document.doc_id, 16) for document in documents], dtype=np.uint64)
    is_first = seen.add_first_occurrences(digests)
    return [document for document, first in zip(documents, is_first, strict=True) if first]


def document_rows(documents: list[CleanedDocument], held_out: bool) -> list[dict[str, Any]]:
    """Rows of the DOCUMENTS contract for the documents on one side of the split."""
    return [
        {"doc_id": document.doc_id, "source": document.source, "sentences": document.sentences}
        for document in documents
        if document.held_out == held_out
    ]


def ingest(
    params: IngestParams,
    sources: Sequence[Source],
    output_dir: Path,
    *,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Write `output_dir`/train and `output_dir`/heldout Parquet shards; return the metrics.

    `output_dir` is a staging directory (see `bertforge.io.atomic_directory`): on any error the
    caller discards it, so a failed run never replaces previous output.
    """
    from bertforge.schemas import DOCUMENT_ARROW_SCHEMA, DOCUMENTS, validate
    from bertforge.shards import ShardWriter

    output_dir = Path(output_dir)
    writers = {
        side: ShardWriter(
            output_dir / side,
            DOCUMENT_ARROW_SCHEMA,
            params.rows_per_shard,
            validate=functools.partial(validate, DOCUMENTS, where=str(output_dir / side)),
            parquet_options={"row_group_size": ROW_GROUP_DOCUMENTS},
        )
        for side in ("train", "heldout")
    }
    progress, counts, seen = ReadProgress(), IngestCounts(), SeenDigests()
    batches = batch_documents(read_documents(sources, params.max_document_chars, progress))
    results = ordered_parallel_map(
        process_batch, batches, params.num_proc, DocumentRules.from_params(params)
    )
    local_files = [source.path for source in sources if source.path is not None]
    total_bytes = sum(path.stat().st_size for path in local_files)
    with tqdm(
        total=total_bytes if len(local_files) == len(sources) else None,
        unit="B",
        unit_scale=True,
        desc="ingest",
        disable=not show_progress,
    ) as bar:
        for result in results:
            kept = drop_duplicates(result.documents, seen)
            counts.add_batch(result, kept)
            writers["train"].write_rows(document_rows(kept, held_out=False))
            writers["heldout"].write_rows(document_rows(kept, held_out=True))
            bar.update(progress.input_bytes - bar.n)
    check_enough_documents(counts, sources, progress)
    for writer in writers.values():
        writer.close()
    return {
        "documents": {
            "train": counts.train,
            "heldout": counts.heldout,
            "total": counts.train + counts.heldout,
            "read": progress.raw_documents,
        },
        "sentences": counts.sentences,
        "characters": counts.characters,
        "characters_removed": counts.characters_removed,
        "input_bytes": progress.input_bytes_done,
        "uncompressed_bytes": progress.uncompressed_bytes,
        "dropped": counts.dropped,
        "sentence_chars": length_summary(counts.sentence_chars),
        "sentence_words": length_summary(counts.sentence_words),
        "shards": {side: writer.shards_written for side, writer in writers.items()},
    }


def check_enough_documents(
    counts: IngestCounts, sources: Sequence[Source], progress: ReadProgress
) -> None:
    """An empty corpus, or one whose every document was held out, is an error naming it."""
    names = ", ".join(source.name for source in sources[:3]) + (" …" if len(sources) > 3 else "")
    if counts.train + counts.heldout == 0:
        raise BertforgeError(
            f"{names}: no documents left after cleaning (read {progress.raw_documents} "
            f"documents; dropped {counts.dropped})"
        )
    if counts.train == 0:
        raise BertforgeError(
            f"{names}: all {counts.heldout} documents were held out; "
            "add documents or lower holdout_fraction"
        )
