"""Build the embedded Chinese corpus, data/raw/corpus-zh/, from Debian's fortunes-zh package.

fortunes-zh (GPL-3.0+) holds three fortune files: `chinese` (modern prose: Debian tips, sayings,
short essays, classical quotations), `tang300` (the Three Hundred Tang Poems) and `song100` (a
hundred Song poems). Each becomes one `<name>.txt.xz` in the format the ingest stage reads: UTF-8,
documents separated by one blank line, no blank line inside a document. A document is one
fortune with its lines as the package wraps them (hard-wrapped prose keeps its line breaks: the
ingest option `join_wrapped_lines` joins them), without the terminal colour codes, the
attribution lines, the poem titles and authors, headings, code and tables.

The build is byte-identical for the same package version and liblzma: the files are read in a
fixed order, nothing is random, and xz stores no timestamp. Run:

    apt-get download fortunes-zh && dpkg-deb -x fortunes-zh_*.deb /tmp/fortunes-zh
    .venv/bin/python scripts/build_chinese_data.py \
        --fortunes /tmp/fortunes-zh/usr/share/games/fortunes
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import re
from pathlib import Path

SOURCES = {"chinese": "fortunes", "tang300": "tang300", "song100": "song100"}
"""fortunes-zh file → output name (data/raw/corpus-zh/<name>.txt.xz)."""
PACKAGE_VERSION = "2.98"
XZ_PRESET = 9
MIN_IDEOGRAPHS = 10  # a document needs at least this many CJK ideographs
MIN_IDEOGRAPH_SHARE = 0.3  # ... and this share of its non-space characters
MAX_HEADING = 30  # characters of a one-line paragraph without final punctuation: a heading

COLOUR_CODE = re.compile(r"\x1b\[[0-9;]*m")
SEPARATOR = re.compile(r"^%\s*$", re.MULTILINE)
IDEOGRAPH = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
SENTENCE_END = tuple("。！？…；.!?：:」”）)》")
DROPPED_LINE = re.compile(
    r"^( {2,}|\t)"  # indented: attributions ("    --《道德经》"), code, tables
    r"|[\u2500-\u257f]"  # box drawing: tables
    r"|^\s*(题目|作者)\s*[:：]"  # poem title and author lines
    r"|^\s*《[^》]*》\s*$"  # a title alone on its line
)


def strip_colour_codes(text: str) -> str:
    """`text` without terminal colour codes, also those nested in one another (ESC[;ESC[34;1mm)."""
    while (stripped := COLOUR_CODE.sub("", text)) != text:
        text = stripped
    return text


def fortune_document(fortune: str) -> str | None:
    """The text of one fortune as a corpus document, or None when too little of it is Chinese."""
    paragraphs = re.split(r"\n\s*\n", strip_colour_codes(fortune).strip("\n"))
    kept: list[str] = []
    for paragraph in paragraphs:
        lines = [line.strip() for line in paragraph.split("\n") if not DROPPED_LINE.search(line)]
        lines = [line for line in lines if line]
        # a heading: a paragraph of one short line without sentence-final punctuation
        if len(lines) == 1 and len(lines[0]) <= MAX_HEADING and not lines[0].endswith(SENTENCE_END):
            continue
        kept.extend(lines)
    text = "\n".join(kept)  # no blank line inside a document
    ideographs = len(IDEOGRAPH.findall(text))
    characters = len("".join(text.split()))
    if ideographs < MIN_IDEOGRAPHS or ideographs < MIN_IDEOGRAPH_SHARE * characters:
        return None
    return text


def build_file(source: Path) -> tuple[str, int, int]:
    """The corpus text of one fortune file, its documents and the fortunes dropped."""
    documents: list[str] = []
    seen: set[str] = set()
    dropped = 0
    for fortune in SEPARATOR.split(source.read_text(encoding="utf-8")):
        document = fortune_document(fortune)
        # drop fortunes with too little Chinese, and repeats of an earlier one
        if document is None or document in seen:
            dropped += fortune.strip() != ""
            continue
        seen.add(document)
        documents.append(document)
    return "\n\n".join(documents) + "\n", len(documents), dropped


def write_xz(path: Path, text: str) -> None:
    """`text` as xz with a fixed preset (xz stores no timestamp: the bytes are stable)."""
    path.write_bytes(lzma.compress(text.encode("utf-8"), format=lzma.FORMAT_XZ, preset=XZ_PRESET))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(fortunes: Path, out: Path) -> list[dict[str, object]]:
    """Write `<name>.txt.xz` for every fortune file into `out`; returns one summary row each."""
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    for source_name, name in SOURCES.items():
        text, documents, dropped = build_file(fortunes / source_name)
        path = out / f"{name}.txt.xz"
        write_xz(path, text)
        rows.append(
            {
                "file": path.name,
                "source": source_name,
                "documents": documents,
                "dropped": dropped,
                "characters": len(text),
                "ideographs": len(IDEOGRAPH.findall(text)),
                "xz_bytes": path.stat().st_size,
                "sha256": sha256_of(path),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fortunes", type=Path, default=Path("/usr/share/games/fortunes"))
    parser.add_argument("--out", type=Path, default=Path("data/raw/corpus-zh"))
    args = parser.parse_args()
    print(f"fortunes-zh {PACKAGE_VERSION} expected; files from {args.fortunes}")
    print("| file | fortune file | documents | dropped | characters | ideographs | xz | sha256 |")
    print("|---|---|---|---|---|---|---|---|")
    for row in build(args.fortunes, args.out):
        print(
            f"| {row['file']} | {row['source']} | {row['documents']} | {row['dropped']} | "
            f"{row['characters']:,} | {row['ideographs']:,} | {row['xz_bytes']:,} B | "
            f"{str(row['sha256'])[:16]} |"
        )


if __name__ == "__main__":
    main()
