"""Build bertforge's embedded real data, data/raw/, from Debian packages.

What it writes (the contract the `ingest` and `finetune` stages read):

- ``corpus/<source>.txt.xz``: real English prose for pretraining, one file per source. UTF-8,
  one document per block, blocks separated by exactly one blank line, no blank line and no
  control character inside a document, one paragraph (a verse, a definition, a quotation) per
  line.
- ``tasks/<task>/{train,dev,test}.jsonl``: fine-tuning tasks whose labels were made by people
  (WordNet's lexicographers, the fortune-mod curators), mirroring GLUE task types. One JSON
  object per line: ``sentence`` or ``sentence1``/``sentence2``, and ``label`` (a string for
  classification, a float for regression). ``card.md``/``card.json`` describe each task and
  give two baselines computed on its test split.
- ``README.md``: sources, licences, package versions and sizes.

The build is byte-identical for the same installed package versions (and the same liblzma):
every collection is sorted, every random choice comes from a seeded hash of the item or a
seeded ``random.Random`` instance, xz is written with a fixed preset and no timestamps.

No task text occurs in the corpus: WordNet and the fortunes are kept out of the corpus, GCIDE
articles that quote WordNet are dropped, task candidates that still match a corpus sentence (a
quotation of the Bible in a WordNet example, a Bierce definition among the fortunes) are dropped
and counted in the cards, and the last step re-reads everything written and fails if any task
text, or any sentence of four words or more of it, equals a line or sentence of the corpus.

Rebuild: ``apt-get install -y <the packages in SOURCES>`` then
``python scripts/build_embedded_data.py``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import lzma
import random
import re
import shutil
import subprocess
import sys
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from bertforge.errors import BertforgeError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from task_card import card_tail  # this folder's

SPLITS = ("train", "dev", "test")
SPLIT_PERCENT = {"train": 70, "dev": 15, "test": 15}
MIN_SPLIT_SIZE = {"train": 2000, "dev": 500, "test": 500}
XZ_PRESET = 9
MAX_TASK_WORDS = 48

# Documents containing a racial slur are dropped from every source (the 1913 dictionary and the
# Devil's Dictionary define and use one); nothing else is censored.
SLUR_PATTERN = re.compile(r"\bnigg", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class DebianSource:
    """A Debian package this builder reads, with the version the committed files came from."""

    package: str
    built_from_version: str
    licence: str
    upstream: str
    files: tuple[str, ...]


SOURCES: dict[str, DebianSource] = {
    source.package: source
    for source in (
        DebianSource(
            "bible-kjv-text",
            "4.38",
            "public domain (King James Version, 1611); BRS data file: free to copy, modify and "
            "distribute (Chip Chapin, 1989)",
            "Bible Retrieval System by Chip Chapin, ftp.funet.fi:/pub/doc/religion/christian/"
            "Bible/unix",
            ("/usr/lib/bible.data",),
        ),
        DebianSource(
            "bible-kjv",
            "4.38",
            "GPL-2+ (the `bible` program, used only to decompress bible-kjv-text)",
            "Bible Retrieval System, Debian package bible-kjv",
            ("/usr/bin/bible",),
        ),
        DebianSource(
            "dict-gcide",
            "0.48.5+nmu2",
            "GPL-2+ (GCIDE)",
            "GNU Collaborative International Dictionary of English 0.48, https://ftp.gnu.org/"
            "gnu/gcide/ (from Webster's Revised Unabridged Dictionary, 1913)",
            ("/usr/share/dictd/gcide.dict.dz", "/usr/share/dictd/gcide.index"),
        ),
        DebianSource(
            "dict-jargon",
            "4.4.7-3.1",
            "public domain (Jargon File 4.4.7)",
            "The Jargon File 4.4.7, 29 Dec 2003, http://catb.org/jargon/",
            ("/usr/share/dictd/jargon.dict.dz", "/usr/share/dictd/jargon.index"),
        ),
        DebianSource(
            "dict-devil",
            "1.0-13.1",
            "public domain (Ambrose Bierce, The Devil's Dictionary, 1911; copyright expired)",
            "Internet Wiretap 1st Online Edition of The Devil's Dictionary, 1993",
            ("/usr/share/dictd/devil.dict.dz", "/usr/share/dictd/devil.index"),
        ),
        DebianSource(
            "wordnet-base",
            "1:3.0-37",
            "WordNet 3.0 licence (permissive; keep the notice: WordNet 3.0 Copyright 2006 by "
            "Princeton University. All rights reserved.)",
            "WordNet 3.0, Princeton University, https://wordnet.princeton.edu/",
            tuple(
                f"/usr/share/wordnet/{name}"
                for name in ("data.noun", "data.verb", "noun.exc", "verb.exc")
            ),
        ),
        DebianSource(
            "fortunes",
            "1:1.99.1-7.3",
            "BSD-3-Clause (fortune-mod); the fortunes are short quotations collected by the "
            "fortune-mod maintainers",
            "fortune-mod 1.99.1, http://www.redellipse.net/code/fortune",
            ("/usr/share/games/fortunes/computers",),
        ),
    )
}

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")

# The WordNet 3.0 lexicographer files, by number (lexnames(5WN); wordnet-base ships only the
# man page, not the lexnames file).
LEXNAMES = (
    "adj.all",
    "adj.pert",
    "adv.all",
    "noun.Tops",
    "noun.act",
    "noun.animal",
    "noun.artifact",
    "noun.attribute",
    "noun.body",
    "noun.cognition",
    "noun.communication",
    "noun.event",
    "noun.feeling",
    "noun.food",
    "noun.group",
    "noun.location",
    "noun.motive",
    "noun.object",
    "noun.person",
    "noun.phenomenon",
    "noun.plant",
    "noun.possession",
    "noun.process",
    "noun.quantity",
    "noun.relation",
    "noun.shape",
    "noun.state",
    "noun.substance",
    "noun.time",
    "verb.body",
    "verb.change",
    "verb.cognition",
    "verb.communication",
    "verb.competition",
    "verb.consumption",
    "verb.contact",
    "verb.creation",
    "verb.emotion",
    "verb.motion",
    "verb.perception",
    "verb.possession",
    "verb.social",
    "verb.stative",
    "verb.weather",
    "adj.ppl",
)


def require_package_files(package: str) -> None:
    """Fail in one line, naming the package to install, if one of its files is missing."""
    for file in SOURCES[package].files:
        if not Path(file).exists():
            raise BertforgeError(
                f"{file} not found: install it with `apt-get install -y {package}`"
            )


def installed_version(package: str) -> str:
    result = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def warn_about_version_drift() -> dict[str, str]:
    """Return the installed versions; warn where they differ from the committed build's."""
    versions = {}
    for package, source in sorted(SOURCES.items()):
        versions[package] = installed_version(package)
        if versions[package] != source.built_from_version:
            print(
                f"warning: {package} {versions[package]} is installed but the committed files "
                f"were built from {source.built_from_version}; the output will differ",
                file=sys.stderr,
            )
    return versions


# --------------------------------------------------------------------------------------------
# Text helpers


def clean_line(text: str) -> str:
    """NFC, no control characters, single spaces: the form every written line takes."""
    text = unicodedata.normalize("NFC", text)
    text = "".join(" " if unicodedata.category(char) == "Cc" else char for char in text)
    return " ".join(text.split())


def normalize_for_overlap(text: str) -> str:
    """Lower-case alphanumerics separated by single spaces: what 'the same text' means here."""
    return " ".join(re.findall(r"[a-z0-9]+", unicodedata.normalize("NFKC", text).lower()))


SENTENCE_BOUNDARY = re.compile(r"(?<=[.!?;:])[\"')\]]*\s+")


def corpus_units(line: str) -> list[str]:
    """A corpus line and each of its sentence-like pieces, normalized."""
    units = [normalize_for_overlap(piece) for piece in [line, *SENTENCE_BOUNDARY.split(line)]]
    return [unit for unit in units if unit]


def task_units(text: str) -> list[str]:
    """A task text and each of its sentence-like pieces of four words or more, normalized: none
    may equal a corpus unit (shorter pieces, such as 'Amen.', would match by chance)."""
    pieces = [normalize_for_overlap(piece) for piece in SENTENCE_BOUNDARY.split(text)]
    return [normalize_for_overlap(text), *(piece for piece in pieces if word_count(piece) >= 4)]


def count_sentences(lines: Sequence[str]) -> int:
    """A rough sentence count (terminal punctuation followed by a capital), for statistics."""
    return sum(len(re.findall(r"[.!?][\"')]*\s+(?=[A-Z\"'(])", line)) + 1 for line in lines)


def stable_hash(*parts: str) -> int:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big")


def split_of(key: str, salt: str) -> str:
    """Assign `key` to train/dev/test by a seeded hash, never by global random state."""
    bucket = stable_hash(salt, "split", key) % 100
    if bucket < SPLIT_PERCENT["train"]:
        return "train"
    if bucket < SPLIT_PERCENT["train"] + SPLIT_PERCENT["dev"]:
        return "dev"
    return "test"


def word_count(text: str) -> int:
    return len(text.split())


# --------------------------------------------------------------------------------------------
# Corpus: dictd dictionaries


DICTD_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def decode_dictd_number(encoded: str) -> int:
    value = 0
    for char in encoded:
        value = value * 64 + DICTD_BASE64.index(char)
    return value


def read_dictd_articles(name: str) -> list[str]:
    """Every article of /usr/share/dictd/<name>, in file order, without the 00-database-* ones.

    Several headwords can point at one article; each article is returned once.
    """
    data = gzip.decompress(Path(f"/usr/share/dictd/{name}.dict.dz").read_bytes())
    spans = set()
    index_text = Path(f"/usr/share/dictd/{name}.index").read_text(encoding="utf-8")
    for line in index_text.splitlines():
        headword, offset, length = line.split("\t")[:3]
        if not headword.startswith("00-database") and not headword.startswith("00database"):
            spans.add((decode_dictd_number(offset), decode_dictd_number(length)))
    return [decode_legacy_bytes(data[start : start + size]) for start, size in sorted(spans)]


def decode_legacy_bytes(raw: bytes) -> str:
    """UTF-8, except for the odd article saved as Windows-1252 (three bytes in GCIDE)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252")


def paragraphs_of(text: str) -> list[list[str]]:
    """Blank-line separated paragraphs, each a list of its raw lines."""
    paragraphs: list[list[str]] = [[]]
    for line in text.split("\n"):
        if line.strip():
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return [paragraph for paragraph in paragraphs if paragraph]


def document_from_paragraphs(headword: str, paragraphs: Sequence[str]) -> list[str]:
    """One line per paragraph; the first names the headword, as a dictionary sentence does."""
    lines = [clean_line(paragraph) for paragraph in paragraphs]
    lines = [line for line in lines if line]
    if lines and headword:
        lines[0] = f"{clean_line(headword)}: {lines[0]}"
    return lines


# GCIDE writes accented letters as codes such as [=a] (a macron), ['e] (e acute) or [e^]
# (e breve), and ligatures as [ae]; everything else in square brackets is an etymology, a usage
# label ([Obs.]) or a source tag ([1913 Webster]) and is removed.
GCIDE_PREFIX_MARKS = {
    "=": "\u0304",
    "~": "\u0303",
    "`": "\u0300",
    "'": "\u0301",
    "^": "\u0302",
    '"': "\u0308",
    ",": "\u0327",
    ".": "\u0323",
    "-": "\u0304",
}
GCIDE_NAMED_CHARACTERS = {
    "ae": "æ",
    "AE": "Æ",
    "oe": "œ",
    "OE": "Œ",
    "thorn": "þ",
    "eth": "ð",
    "deg": "°",
    "imac": "ī",
    "aum": "ä",
    "ng": "ŋ",
    "th": "θ",
}
GCIDE_CHARACTER_CODE = re.compile(r"\[([=~`'^\",.\-]?)([A-Za-z]{1,5})(\^?)\]")
GCIDE_STRESS_MARKS = re.compile(r"[*\"`]")


def decode_gcide_character(match: re.Match[str]) -> str:
    mark, letters, breve = match.groups()
    if not mark and not breve:
        return GCIDE_NAMED_CHARACTERS.get(letters, match.group(0))
    if len(letters) != 1:
        return match.group(0)
    combining = "\u0306" if breve else GCIDE_PREFIX_MARKS[mark]
    return unicodedata.normalize("NFC", letters + combining)


def remove_bracketed(text: str) -> str:
    """Remove [...] groups, innermost first, so nested etymology brackets go too."""
    previous = None
    while previous != text:
        previous = text
        text = re.sub(r"\[[^\[\]]*\]", " ", text)
    return text


def split_gcide_header(lines: Sequence[str]) -> int:
    """Index of the first body line: the headword line and its continuation lines (inflections,
    etymology) are the header; the body starts at depth 0 with a capital, digit or '('."""
    depth = 0
    for index, line in enumerate(lines):
        stripped = line.strip()
        if index > 0 and depth == 0 and re.match(r"[A-Z0-9(]", stripped):
            return index
        depth += stripped.count("[") + stripped.count("(")
        depth -= stripped.count("]") + stripped.count(")")
        depth = max(depth, 0)
    return len(lines)


def remove_gcide_citations(line: str) -> str:
    """Drop a quotation's author ('--Milton.', '--Rom. v. 1.'), which GCIDE writes as '--'
    right before a capital or digit, up to the next opening quote or the end of the raw line."""
    return re.sub(r'\s*--(?=[A-Z0-9])[^"]*?(?=\s+"|\s*$)', "", line)


def clean_gcide_paragraph(raw_lines: Sequence[str]) -> str:
    """One GCIDE paragraph as plain prose: citations, derived forms ('-- {Antheral}, a.'),
    brackets, pronunciations, sense numbers, domain labels ('(Zool.)') and braces removed."""
    paragraph = " ".join(remove_gcide_citations(line.strip()) for line in raw_lines)
    paragraph = re.sub(r"\s*--\s*\{.*$", "", paragraph)
    paragraph = GCIDE_CHARACTER_CODE.sub(decode_gcide_character, paragraph)
    paragraph = remove_bracketed(paragraph)
    paragraph = re.sub(r"\\[^\\]*\\", " ", paragraph)
    paragraph = re.sub(r"\{([^{}]*)\}", lambda m: GCIDE_STRESS_MARKS.sub("", m.group(1)), paragraph)
    paragraph = re.sub(r"^\s*(?:\d+\.|\([a-z0-9]\)|Note:)\s*", "", paragraph)
    paragraph = re.sub(r"\((?:[A-Z][A-Za-z]*\.\s*(?:&|and)?\s*)+\)", " ", paragraph)
    paragraph = re.sub(r"\s+([,;:.])", r"\1", paragraph)
    return " ".join(paragraph.split())


def is_clean_prose(paragraph: str) -> bool:
    """At least three words, and none of the markup or lost characters that cleaning left."""
    return (
        word_count(paragraph) >= 3
        and re.search(r"[a-z]", paragraph) is not None
        and re.search(r"[\\{}\[\]*|<>]|\w\?\w|(?:^|\s)\?\w", paragraph) is None
    )


def gcide_documents() -> Iterator[list[str]]:
    """GCIDE articles from Webster's 1913 and its supplements, one document per article.

    Articles that mention WordNet anywhere are dropped (GCIDE imported WordNet 1.5 glosses, and
    the fine-tuning tasks are made from WordNet), as are synonym lists and articles that are
    only a cross-reference.
    """
    for article in read_dictd_articles("gcide"):
        if "WordNet" in article:
            continue
        lines = article.strip("\n").split("\n")
        headword = lines[0].split("\\")[0].strip()
        body = "\n".join(lines[split_gcide_header(lines) :])
        paragraphs = [
            clean_gcide_paragraph(paragraph)
            for paragraph in paragraphs_of(body)
            if not paragraph[0].strip().startswith(("Syn.", "Syn:"))
        ]
        yield document_from_paragraphs(headword, [p for p in paragraphs if is_clean_prose(p)])


JARGON_LEADING_LABELS = re.compile(
    r"^(?:\[[^\]]*\]\s*|\d+\.\s*|(?:n|v|vt|vi|adj|adv|interj|pron|prep|conj|excl|abbrev)"
    r"(?:\.,\s*|\.\s+|,(?=\w)))+"
)


def jargon_documents() -> Iterator[list[str]]:
    """Jargon File entries: the indented prose paragraphs, without code, tables or verse."""
    for article in read_dictd_articles("jargon"):
        lines = article.strip("\n").split("\n")
        headword = lines[0].strip()
        body_lines = lines[1:]
        if body_lines and not body_lines[0].startswith("    "):
            body_lines = body_lines[1:]
        body = re.sub(r"\}\s*\n\s*(s|es|ed|ing)\b", r"}\1", "\n".join(body_lines))
        body = re.sub(r"\{([^{}]*)\}", lambda m: " ".join(m.group(1).split()), body)
        paragraphs = []
        for paragraph in paragraphs_of(body):
            if any(not re.match(r" {4}\S", line) for line in paragraph):
                continue
            text = JARGON_LEADING_LABELS.sub("", " ".join(line.strip() for line in paragraph))
            if is_clean_prose(text):
                paragraphs.append(text)
        yield document_from_paragraphs(headword, paragraphs)


def devil_documents() -> Iterator[list[str]]:
    """The Devil's Dictionary as Bierce wrote it ('EXCESS, n. In morals, ...'), one entry per
    document; the right-aligned names of invented poets under the verses are dropped."""
    for article in read_dictd_articles("devil"):
        paragraphs = []
        for paragraph in paragraphs_of(article.strip("\n")):
            kept = [line.strip() for line in paragraph if not re.match(r" {20,}\S", line)]
            text = " ".join(kept).replace("_", "")
            if word_count(text) >= 2:
                paragraphs.append(text)
        yield document_from_paragraphs("", paragraphs)


# --------------------------------------------------------------------------------------------
# Corpus: the King James Bible


BIBLE_RANGE = "Genesis1:1-Revelation22:21"


def bible_chapters() -> Iterator[list[str]]:
    """Each chapter is a document and each verse a line, verse numbers and headings removed.

    `bible` (package bible-kjv) decompresses the Bible Retrieval System data file.
    """
    output = subprocess.run(
        ["bible", "-l100000", BIBLE_RANGE],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
    ).stdout
    verses: list[str] = []
    for line in output.split("\n"):
        verse = re.match(r"\s+\d+ (.*)$", line)
        if verse:
            verses.append(clean_line(verse.group(1)))
        elif line.strip() and verses:
            yield verses
            verses = []
    if verses:
        yield verses


# --------------------------------------------------------------------------------------------
# Corpus: writing


@dataclass(frozen=True)
class CorpusSource:
    name: str
    packages: tuple[str, ...]
    documents: Callable[[], Iterable[list[str]]]
    min_lines: int
    description: str


CORPUS_SOURCES = (
    CorpusSource(
        "bible-kjv",
        ("bible-kjv-text", "bible-kjv"),
        bible_chapters,
        1,
        "one document per chapter (1,189), one verse per line, verse numbers and chapter "
        "headings removed",
    ),
    CorpusSource(
        "gcide",
        ("dict-gcide",),
        gcide_documents,
        2,
        "one document per article of Webster's 1913 (and its GCIDE supplements) with at least "
        "two paragraphs after cleaning; the first line is 'Headword: first definition', then one "
        "definition, note or quotation per line. Pronunciations, etymologies, usage labels, "
        "source tags, author citations, synonym lists and markup are removed; articles that "
        "mention WordNet are dropped",
    ),
    CorpusSource(
        "jargon",
        ("dict-jargon",),
        jargon_documents,
        1,
        "one document per entry; 'headword: first paragraph', then one paragraph per line; "
        "usage labels, sense numbers and {cross-reference} braces removed; code, tables and "
        "verse (lines indented past the prose) dropped",
    ),
    CorpusSource(
        "devil",
        ("dict-devil",),
        devil_documents,
        1,
        "one document per entry, as Bierce wrote it; one paragraph or stanza per line; the "
        "names of invented poets under verses removed",
    ),
)


@dataclass(frozen=True)
class CorpusStats:
    name: str
    documents: int
    lines: int
    sentences: int
    uncompressed_bytes: int
    compressed_bytes: int
    dropped_documents: int


def write_xz(path: Path, text: str) -> int:
    """Write `text` as xz with a fixed preset; xz stores no timestamp, so bytes are stable."""
    data = lzma.compress(text.encode("utf-8"), format=lzma.FORMAT_XZ, preset=XZ_PRESET)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return len(data)


def build_corpus_source(source: CorpusSource, out_dir: Path) -> CorpusStats:
    kept: list[list[str]] = []
    dropped = 0
    for document in source.documents():
        text = "\n".join(document)
        if (
            len(document) < source.min_lines
            or count_sentences(document) < 2
            or (SLUR_PATTERN.search(text))
        ):
            dropped += 1
            continue
        kept.append(document)
    text = "\n\n".join("\n".join(document) for document in kept) + "\n"
    compressed = write_xz(out_dir / "corpus" / f"{source.name}.txt.xz", text)
    return CorpusStats(
        name=source.name,
        documents=len(kept),
        lines=sum(len(document) for document in kept),
        sentences=sum(count_sentences(document) for document in kept),
        uncompressed_bytes=len(text.encode("utf-8")),
        compressed_bytes=compressed,
        dropped_documents=dropped,
    )


def read_corpus_documents(out_dir: Path) -> Iterator[str]:
    for path in sorted((out_dir / "corpus").glob("*.txt.xz")):
        yield from lzma.decompress(path.read_bytes()).decode("utf-8").split("\n\n")


def corpus_overlap_index(out_dir: Path) -> set[str]:
    """Every normalized line and sentence-like piece of the written corpus."""
    index: set[str] = set()
    for document in read_corpus_documents(out_dir):
        for line in document.split("\n"):
            index.update(corpus_units(line))
    return index


# --------------------------------------------------------------------------------------------
# WordNet


@dataclass(frozen=True)
class Synset:
    """One WordNet synset: its lexicographer file, lemmas, hypernyms and gloss."""

    key: str
    pos: str
    lexname: str
    lemmas: tuple[str, ...]
    hypernyms: tuple[str, ...]
    definition: str
    examples: tuple[str, ...]


def parse_gloss(gloss: str) -> tuple[str, tuple[str, ...]]:
    """Split a gloss into its definition and its quoted example sentences."""
    examples = tuple(clean_line(example) for example in re.findall(r'"([^"]+)"', gloss))
    definition = clean_line(gloss.split('"')[0]).rstrip(";: ")
    return definition, tuple(example for example in examples if example)


def parse_synset_line(line: str, pos: str) -> Synset:
    """Parse one line of a WordNet data.<pos> file (format: wndb(5WN))."""
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    offset, lexname_number, word_count_hex = fields[0], int(fields[1]), fields[3]
    words = fields[4 : 4 + 2 * int(word_count_hex, 16) : 2]
    pointer_start = 4 + 2 * int(word_count_hex, 16)
    hypernyms = []
    for pointer in range(int(fields[pointer_start])):
        symbol, target_offset, target_pos = fields[pointer_start + 1 + 4 * pointer :][:3]
        if symbol in ("@", "@i"):
            hypernyms.append(f"{target_pos}{target_offset}")
    definition, examples = parse_gloss(gloss)
    lemmas = tuple(re.sub(r"\(\w+\)$", "", word).replace("_", " ").lower() for word in words)
    return Synset(
        key=f"{pos}{offset}",
        pos=pos,
        lexname=LEXNAMES[lexname_number],
        lemmas=lemmas,
        hypernyms=tuple(sorted(hypernyms)),
        definition=definition,
        examples=examples,
    )


def read_wordnet(pos: str) -> dict[str, Synset]:
    """All synsets of one part of speech ('n' or 'v'), keyed like 'n00001740'."""
    path = WORDNET_DIR / f"data.{'noun' if pos == 'n' else 'verb'}"
    synsets = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("  "):
            synset = parse_synset_line(line, pos)
            synsets[synset.key] = synset
    return synsets


def read_inflection_exceptions(pos: str) -> dict[str, set[str]]:
    """Irregular inflections from noun.exc/verb.exc, as base form -> inflected forms."""
    path = WORDNET_DIR / f"{'noun' if pos == 'n' else 'verb'}.exc"
    inflected_forms: dict[str, set[str]] = defaultdict(set)
    for line in path.read_text(encoding="utf-8").splitlines():
        inflected, *bases = line.split()
        for base in bases:
            inflected_forms[base.replace("_", " ")].add(inflected.replace("_", " "))
    return inflected_forms


# --------------------------------------------------------------------------------------------
# Tasks: shared pieces


@dataclass(frozen=True)
class Example:
    """One task example: one or two texts, a label, and the split its group hashed to."""

    texts: tuple[str, ...]
    label: str | float
    split: str


@dataclass(frozen=True)
class TaskResult:
    """What a task builder made, and the numbers its card reports about how."""

    examples: list[Example]
    candidates: int
    dropped_for_corpus_overlap: int


TextFilter = Callable[[str], bool]
Row = dict[str, object]
RowsBySplit = dict[str, list[Row]]


def is_usable_task_text(text: str) -> bool:
    return 3 <= word_count(text) <= MAX_TASK_WORDS and SLUR_PATTERN.search(text) is None


def inflected_forms(lemma: str, pos: str, irregular: dict[str, set[str]]) -> set[str]:
    """The lemma and its regular and irregular inflections; over-generation is harmless
    because the forms are only looked up among an example's words."""
    forms = {lemma} | irregular.get(lemma, set())
    forms |= {lemma + "s", lemma + "es"}
    if lemma.endswith("y"):
        forms |= {lemma[:-1] + "ies", lemma[:-1] + "ied"}
    if pos == "v":
        forms |= {lemma + "ed", lemma + "d", lemma + "ing"}
        if lemma.endswith("e"):
            forms.add(lemma[:-1] + "ing")
        if re.search(r"[^aeiou][aeiou][bdgklmnprtv]$", lemma):
            forms |= {lemma + lemma[-1] + "ed", lemma + lemma[-1] + "ing"}
    return forms


def words_of(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+(?:-[a-z]+)*", text.lower()))


def first_by_hash(items: Iterable[tuple[str, ...]], count: int, salt: str) -> list[tuple[str, ...]]:
    """A deterministic pseudo-random choice of `count` items: those with the smallest hash."""
    return sorted(items, key=lambda item: stable_hash(salt, *item))[:count]


# --------------------------------------------------------------------------------------------
# Task: supersense (single-sentence classification)


SUPERSENSE_CLASSES = 15
SUPERSENSE_PER_CLASS = 400


def build_supersense(synsets: dict[str, Synset], in_corpus: TextFilter) -> TaskResult:
    """A WordNet definition -> the lexicographer file its synset was filed in.

    The 15 most frequent noun and verb lexicographer files (noun.Tops excluded), 400 definitions
    each, chosen by a seeded hash; a definition shared by several synsets is used only if they
    all agree on the file.
    """
    labels_by_text: dict[str, set[str]] = defaultdict(set)
    for synset in synsets.values():
        if synset.lexname != "noun.Tops" and is_usable_task_text(synset.definition):
            labels_by_text[synset.definition].add(synset.lexname)
    unambiguous = {
        text: labels.pop() for text, labels in labels_by_text.items() if len(labels) == 1
    }
    dropped = sorted(text for text in unambiguous if in_corpus(text))
    for text in dropped:
        del unambiguous[text]
    class_sizes = Counter(unambiguous.values())
    classes = sorted(class_sizes, key=lambda label: (-class_sizes[label], label))
    classes = classes[:SUPERSENSE_CLASSES]
    examples = []
    for label in sorted(classes):
        texts = [(text,) for text, text_label in unambiguous.items() if text_label == label]
        for (text,) in first_by_hash(texts, SUPERSENSE_PER_CLASS, "supersense"):
            examples.append(Example((text,), label, split_of(text, "supersense")))
    return TaskResult(examples, len(labels_by_text), len(dropped))


# --------------------------------------------------------------------------------------------
# Task: wic (sentence-pair classification)


WIC_PAIRS_PER_LABEL_PER_LEMMA = 8
# the target word's marker on each side, as WiC gives the word and its positions
WIC_TARGET_MARK = "*"


def collect_wic_occurrences(
    synsets: dict[str, Synset], irregular: dict[str, dict[str, set[str]]], in_corpus: TextFilter
) -> tuple[dict[tuple[str, str], dict[str, list[str]]], int]:
    """(pos, lemma) -> synset -> its example sentences in which the lemma really occurs.

    Each example sentence is given to exactly one (pos, lemma) group (the one with the smallest
    seeded hash) so that a sentence can never reach two splits; an example sentence that
    appears in two synsets is ambiguous and dropped.
    """
    synsets_by_example: dict[str, set[str]] = defaultdict(set)
    for synset in synsets.values():
        for example in synset.examples:
            synsets_by_example[example].add(synset.key)
    dropped = 0
    groups_by_example: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for example, keys in sorted(synsets_by_example.items()):
        if len(keys) != 1 or not is_usable_task_text(example):
            continue
        if in_corpus(example):
            dropped += 1
            continue
        synset = synsets[next(iter(keys))]
        example_words = words_of(example)
        for lemma in synset.lemmas:
            if re.fullmatch(r"[a-z]+", lemma) and example_words & inflected_forms(
                lemma, synset.pos, irregular[synset.pos]
            ):
                groups_by_example[example].append((synset.pos, lemma, synset.key))
    occurrences: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for example, candidates in sorted(groups_by_example.items()):
        pos, lemma, key = min(candidates, key=lambda group: stable_hash("wic", *group[:2]))
        occurrences[(pos, lemma)][key].append(example)
    return occurrences, dropped


def mark_target(text: str, forms: set[str]) -> str:
    """`text` with its first occurrence of the target word (any of its `forms`, as a whole word)
    between `WIC_TARGET_MARK`s: the model is told which word to compare, as WiC tells it."""
    # a whole word exactly as `words_of` cuts them (letters and inner hyphens)
    words = re.finditer(r"[A-Za-z]+(?:-[A-Za-z]+)*", text)
    found = next((word for word in words if word.group().lower() in forms), None)
    if found is None:
        raise BertforgeError(f"wic: no form of the target word in {text!r}")
    start, end = found.span()
    return f"{text[:start]}{WIC_TARGET_MARK}{text[start:end]}{WIC_TARGET_MARK}{text[end:]}"


def build_wic(
    synsets: dict[str, Synset], irregular: dict[str, dict[str, set[str]]], in_corpus: TextFilter
) -> TaskResult:
    """Two WordNet example sentences containing the same noun or verb: 'same' if both
    illustrate the same synset, 'different' if they illustrate two of the lemma's synsets.

    As WiC (Pilehvar & Camacho-Collados, 2019) was built. Every lemma gives as many 'same' as
    'different' pairs (at most 8 each), so the lemma alone predicts nothing; whole lemmas are
    assigned to splits.
    """
    occurrences, dropped = collect_wic_occurrences(synsets, irregular, in_corpus)
    examples = []
    candidates = 0
    for (pos, lemma), by_synset in sorted(occurrences.items()):
        if len(by_synset) < 2:
            continue
        same = [
            pair for sentences in by_synset.values() for pair in combinations(sorted(sentences), 2)
        ]
        different = [
            (first, second)
            for key_a, key_b in combinations(sorted(by_synset), 2)
            for first in by_synset[key_a]
            for second in by_synset[key_b]
        ]
        candidates += len(same) + len(different)
        count = min(WIC_PAIRS_PER_LABEL_PER_LEMMA, len(same), len(different))
        split = split_of(f"{pos}:{lemma}", "wic")
        forms = inflected_forms(lemma, pos, irregular[pos])
        for label, pairs in (("same", same), ("different", different)):
            for pair in first_by_hash(pairs, count, f"wic:{label}"):
                ordered = tuple(sorted(pair, key=lambda text: stable_hash("wic:order", text)))
                # the target word marked in both sentences
                marked = tuple(mark_target(text, forms) for text in ordered)
                examples.append(Example(marked, label, split))
    return TaskResult(examples, candidates, dropped)


# --------------------------------------------------------------------------------------------
# Task: glosssim (sentence-pair regression)


GLOSSSIM_PAIRS = {"train": 4000, "dev": 1000, "test": 1000}
GLOSSSIM_BINS = 5


class HypernymTaxonomy:
    """WordNet's noun hierarchy, for Wu-Palmer similarity over the hypernym (@, @i) pointers."""

    def __init__(self, synsets: dict[str, Synset]) -> None:
        self.synsets = synsets
        self._ancestors: dict[str, dict[str, int]] = {}
        self._depths: dict[str, int] = {}

    def ancestors(self, key: str) -> dict[str, int]:
        """Every ancestor of `key` (itself included) with its fewest hypernym steps away."""
        if key not in self._ancestors:
            distances = {key: 0}
            for hypernym in self.synsets[key].hypernyms:
                for ancestor, distance in self.ancestors(hypernym).items():
                    distances[ancestor] = min(distances.get(ancestor, distance + 1), distance + 1)
            self._ancestors[key] = distances
        return self._ancestors[key]

    def depth(self, key: str) -> int:
        """1 for the root ('entity'), plus the fewest steps up to it."""
        if key not in self._depths:
            self._depths[key] = 1 + min(
                distance
                for ancestor, distance in self.ancestors(key).items()
                if not self.synsets[ancestor].hypernyms
            )
        return self._depths[key]

    def wu_palmer(self, first: str, second: str) -> float:
        """max over common ancestors c of 2 depth(c) / (steps(a, c) + steps(b, c) + 2 depth(c))."""
        first_ancestors, second_ancestors = self.ancestors(first), self.ancestors(second)
        best = 0.0
        for common in first_ancestors.keys() & second_ancestors.keys():
            depth = self.depth(common)
            steps = first_ancestors[common] + second_ancestors[common]
            best = max(best, 2 * depth / (steps + 2 * depth))
        return best


def hyponym_index(synsets: dict[str, Synset]) -> dict[str, list[str]]:
    hyponyms: dict[str, list[str]] = defaultdict(list)
    for key in sorted(synsets):
        for hypernym in synsets[key].hypernyms:
            hyponyms[hypernym].append(key)
    return hyponyms


def glosssim_partners(
    keys: Sequence[str],
    synsets: dict[str, Synset],
    hyponyms: dict[str, list[str]],
    rng: random.Random,
) -> list[tuple[str, str]]:
    """For each synset, up to four partners spread over the similarity range: a sibling, a
    cousin, a synset from the same lexicographer file and any synset (all from `keys`)."""
    allowed = set(keys)
    by_lexname: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        by_lexname[synsets[key].lexname].append(key)
    pairs = []
    for key in keys:
        parents = synsets[key].hypernyms
        siblings = sorted({k for p in parents for k in hyponyms[p] if k in allowed} - {key})
        uncles = {u for p in parents for g in synsets[p].hypernyms for u in hyponyms[g]}
        cousins = sorted(
            {k for u in uncles - set(parents) for k in hyponyms[u] if k in allowed}
            - {key, *siblings}
        )
        partners = [
            rng.choice(siblings) if siblings else key,
            rng.choice(cousins) if cousins else key,
            rng.choice(by_lexname[synsets[key].lexname]),
            rng.choice(keys),
        ]
        pairs.extend((key, partner) for partner in partners if partner != key)
    return pairs


def build_glosssim(nouns: dict[str, Synset], in_corpus: TextFilter) -> TaskResult:
    """Two WordNet noun definitions -> 5 x the Wu-Palmer similarity of their synsets in
    WordNet's hypernym taxonomy, a 0-5 scale like STS-B's.

    Synsets (not pairs) are assigned to splits, so a definition is in one split only; pairs are
    drawn within a split and chosen so that the five unit-wide score bins are equally full.
    """
    taxonomy = HypernymTaxonomy(nouns)
    hyponyms = hyponym_index(nouns)
    synsets_by_definition: dict[str, list[str]] = defaultdict(list)
    for key in sorted(nouns):
        if is_usable_task_text(nouns[key].definition):
            synsets_by_definition[nouns[key].definition].append(key)
    dropped = sorted(text for text in synsets_by_definition if in_corpus(text))
    usable = sorted(
        keys[0]
        for text, keys in synsets_by_definition.items()
        if len(keys) == 1 and text not in set(dropped)
    )
    examples = []
    candidates = 0
    for split in SPLITS:
        keys = [key for key in usable if split_of(nouns[key].definition, "glosssim") == split]
        pairs = glosssim_partners(keys, nouns, hyponyms, random.Random(f"glosssim:{split}"))
        pairs = sorted({tuple(sorted(pair)) for pair in pairs}, key=lambda p: stable_hash(*p))
        candidates += len(pairs)
        per_bin = GLOSSSIM_PAIRS[split] // GLOSSSIM_BINS
        filled: Counter[int] = Counter()
        uses: Counter[str] = Counter()
        for first, second in pairs:
            score = round(5 * taxonomy.wu_palmer(first, second), 3)
            score_bin = min(int(score), GLOSSSIM_BINS - 1)
            if filled[score_bin] >= per_bin or uses[first] >= 2 or uses[second] >= 2:
                continue
            filled[score_bin] += 1
            uses.update((first, second))
            texts = (nouns[first].definition, nouns[second].definition)
            examples.append(Example(texts, score, split))
    return TaskResult(examples, candidates, len(dropped))


# --------------------------------------------------------------------------------------------
# Task: fortune (single-sentence classification)


FORTUNE_FILES = (
    "computers",
    "definitions",
    "drugs",
    "education",
    "food",
    "law",
    "linux",
    "literature",
    "men-women",
    "people",
    "politics",
    "science",
    "songs-poems",
    "startrek",
    "work",
    "zippy",
)
FORTUNE_PER_CLASS = 400


def read_fortunes(name: str) -> list[str]:
    """The fortunes of one fortune file, each on one line; overstrike (x\\b) sequences removed."""
    raw = (FORTUNES_DIR / name).read_bytes().decode("utf-8", errors="replace")
    raw = re.sub(r".\x08", "", raw)
    return [clean_line(fortune) for fortune in re.split(r"^%$", raw, flags=re.MULTILINE)]


def is_prose_fortune(fortune: str) -> bool:
    """Mostly letters, no ASCII art (runs of one symbol), short enough for 128 tokens."""
    non_space = re.sub(r"\s", "", fortune)
    return (
        is_usable_task_text(fortune)
        and word_count(fortune) >= 5
        and sum(char.isalpha() for char in non_space) >= 0.75 * len(non_space)
        and re.search(r"([^\w\s])\1\1", fortune) is None
    )


def build_fortune(in_corpus: TextFilter) -> TaskResult:
    """A fortune -> the fortune-mod file (topic) its curators filed it in.

    Sixteen topical files; prose fortunes of 5-48 words; a fortune found in two files is
    dropped; at most 400 per file, chosen by a seeded hash.
    """
    files_by_fortune: dict[str, set[str]] = defaultdict(set)
    for name in FORTUNE_FILES:
        for fortune in read_fortunes(name):
            if is_prose_fortune(fortune):
                files_by_fortune[fortune].add(name)
    unambiguous = {text: names.pop() for text, names in files_by_fortune.items() if len(names) == 1}
    dropped = sorted(text for text in unambiguous if in_corpus(text))
    for text in dropped:
        del unambiguous[text]
    examples = []
    for name in FORTUNE_FILES:
        texts = [(text,) for text, label in unambiguous.items() if label == name]
        for (text,) in first_by_hash(texts, FORTUNE_PER_CLASS, "fortune"):
            examples.append(Example((text,), name, split_of(text, "fortune")))
    return TaskResult(examples, len(files_by_fortune), len(dropped))


# --------------------------------------------------------------------------------------------
# Tasks: writing, checking, baselines, cards


@dataclass(frozen=True)
class TaskSpec:
    """How a task is presented: its name, GLUE-style type, text keys and how it was made."""

    name: str
    task_type: str
    text_keys: tuple[str, ...]
    packages: tuple[str, ...]
    summary: str
    construction: str
    label_meaning: str
    positive_label: str | None = None


def task_rows(examples: Sequence[Example], spec: TaskSpec, split: str) -> list[dict[str, object]]:
    """One split's JSON objects, in a seeded-hash order (not grouped by label or lemma)."""
    chosen = [example for example in examples if example.split == split]
    chosen.sort(key=lambda example: stable_hash(spec.name, "order", *example.texts))
    return [
        {**dict(zip(spec.text_keys, example.texts, strict=True)), "label": example.label}
        for example in chosen
    ]


def write_jsonl(path: Path, rows: Sequence[dict[str, object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def check_splits_are_disjoint(spec: TaskSpec, rows_by_split: RowsBySplit) -> None:
    """No text (either side of a pair) may appear in two splits, and every split is big enough."""
    seen: dict[str, str] = {}
    for split in SPLITS:
        if len(rows_by_split[split]) < MIN_SPLIT_SIZE[split]:
            raise BertforgeError(
                f"task {spec.name}: {split} has {len(rows_by_split[split])} examples, "
                f"fewer than {MIN_SPLIT_SIZE[split]}"
            )
        for row in rows_by_split[split]:
            for key in spec.text_keys:
                text = str(row[key])
                if seen.setdefault(text, split) != split:
                    raise BertforgeError(
                        f"task {spec.name}: text in both {seen[text]} and {split}: {text!r}"
                    )


def bag_of_words_features(
    rows_by_split: RowsBySplit, text_keys: Sequence[str]
) -> dict[str, object]:
    """Binary bag of words fitted on train; a pair is [words(a), words(b), words(a) * words(b)],
    the CBOW-style pair features of the GLUE baselines."""
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(binary=True, min_df=2)
    vectorizer.fit([str(row[key]) for row in rows_by_split["train"] for key in text_keys])
    features = {}
    for split, rows in rows_by_split.items():
        sides = [vectorizer.transform([str(row[key]) for row in rows]) for key in text_keys]
        if len(sides) == 2:
            sides.append(sides[0].multiply(sides[1]))
        features[split] = hstack(sides).tocsr()
    return features


def classification_scores(
    truth: Sequence[str], predicted: Sequence[str], positive_label: str | None
) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    scores = {"accuracy": accuracy_score(truth, predicted)}
    if positive_label is None:
        scores["macro_f1"] = f1_score(truth, predicted, average="macro", zero_division=0)
    else:
        scores["f1"] = f1_score(truth, predicted, pos_label=positive_label, zero_division=0)
        scores["matthews_corr"] = matthews_corrcoef(truth, predicted)
    return {name: round(float(value), 4) for name, value in scores.items()}


def regression_scores(truth: Sequence[float], predicted: Sequence[float]) -> dict[str, object]:
    from scipy.stats import pearsonr, spearmanr

    mse = sum((t - p) ** 2 for t, p in zip(truth, predicted, strict=True)) / len(truth)
    if len(set(predicted)) == 1:
        return {"pearson": None, "spearman": None, "mse": round(mse, 4)}
    return {
        "pearson": round(float(pearsonr(truth, predicted).statistic), 4),
        "spearman": round(float(spearmanr(truth, predicted).statistic), 4),
        "mse": round(mse, 4),
    }


def compute_baselines(spec: TaskSpec, rows_by_split: RowsBySplit) -> dict[str, dict[str, object]]:
    """Two baselines on test after training on train; the regularization strength of the
    bag-of-words model is picked on dev."""
    from sklearn.linear_model import LogisticRegression, Ridge

    features = bag_of_words_features(rows_by_split, spec.text_keys)
    labels = {split: [row["label"] for row in rows] for split, rows in rows_by_split.items()}
    if spec.task_type == "sentence_pair_regression":
        mean = sum(labels["train"]) / len(labels["train"])
        best = max(
            (0.1, 1.0, 10.0, 100.0),
            key=lambda alpha: (
                regression_scores(
                    labels["dev"],
                    Ridge(alpha=alpha)
                    .fit(features["train"], labels["train"])
                    .predict(features["dev"])
                    .tolist(),
                )["pearson"]
                or -1.0
            ),
        )
        model = Ridge(alpha=best).fit(features["train"], labels["train"])
        return {
            "mean_predictor": regression_scores(labels["test"], [mean] * len(labels["test"])),
            "bow_ridge": {
                "alpha": best,
                **regression_scores(labels["test"], model.predict(features["test"]).tolist()),
            },
        }
    counts = Counter(labels["train"])
    majority = min(counts, key=lambda label: (-counts[label], label))

    def fitted(c: float) -> LogisticRegression:
        return LogisticRegression(C=c, max_iter=2000).fit(features["train"], labels["train"])

    best = max(
        (0.1, 1.0, 10.0),
        key=lambda c: classification_scores(
            labels["dev"], fitted(c).predict(features["dev"]).tolist(), spec.positive_label
        )["accuracy"],
    )
    predicted = fitted(best).predict(features["test"]).tolist()
    return {
        "majority_class": {
            "label": majority,
            **classification_scores(
                labels["test"], [majority] * len(labels["test"]), spec.positive_label
            ),
        },
        "bow_logistic_regression": {
            "C": best,
            **classification_scores(labels["test"], predicted, spec.positive_label),
        },
    }


def label_statistics(spec: TaskSpec, rows_by_split: RowsBySplit) -> dict[str, dict[str, object]]:
    """Class counts per split, or for regression the mean and the counts per unit-wide bin."""
    statistics: dict[str, dict[str, object]] = {}
    for split, rows in rows_by_split.items():
        labels = [row["label"] for row in rows]
        if spec.task_type == "sentence_pair_regression":
            bins = Counter(f"{min(int(label), 4)}-{min(int(label), 4) + 1}" for label in labels)
            statistics[split] = {
                "mean": round(sum(labels) / len(labels), 4),
                "bins": dict(sorted(bins.items())),
            }
        else:
            statistics[split] = dict(sorted(Counter(labels).items()))
    return statistics


def text_length_statistics(spec: TaskSpec, rows: Sequence[dict[str, object]]) -> dict[str, float]:
    lengths = [word_count(str(row[key])) for row in rows for key in spec.text_keys]
    return {"mean_words": round(sum(lengths) / len(lengths), 2), "max_words": max(lengths)}


def sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def make_card(
    spec: TaskSpec,
    result: TaskResult,
    rows_by_split: RowsBySplit,
    versions: dict[str, str],
) -> dict[str, object]:
    regression = spec.task_type == "sentence_pair_regression"
    all_labels = sorted({str(row["label"]) for rows in rows_by_split.values() for row in rows})
    card: dict[str, object] = {
        "task": spec.name,
        "task_type": spec.task_type,
        "text_keys": list(spec.text_keys),
        "label_key": "label",
        "label_type": "float" if regression else "string",
    }
    if regression:
        card["label_range"] = [0.0, 5.0]
    else:
        card["labels"] = all_labels
    if spec.positive_label:
        card["positive_label"] = spec.positive_label
    card |= {
        "summary": spec.summary,
        "label_meaning": spec.label_meaning,
        "construction": spec.construction,
        "sources": [
            {
                "package": package,
                "version": versions[package],
                "licence": SOURCES[package].licence,
                "upstream": SOURCES[package].upstream,
            }
            for package in spec.packages
        ],
        "split_sizes": {split: len(rows) for split, rows in rows_by_split.items()},
        "label_statistics": label_statistics(spec, rows_by_split),
        "text_length": text_length_statistics(
            spec, [row for rows in rows_by_split.values() for row in rows]
        ),
        "candidates_considered": result.candidates,
        "candidates_dropped_because_in_corpus": result.dropped_for_corpus_overlap,
        "baselines": compute_baselines(spec, rows_by_split),
        "baseline_protocol": (
            "trained on train, regularization picked on dev, scored on test; binary "
            "bag of words fitted on train (min_df=2), pairs as [a, b, a*b]; scikit-learn "
            f"{sklearn_version()}"
        ),
        "built_by": "scripts/build_embedded_data.py",
    }
    return card


def render_card_markdown(card: dict[str, object]) -> str:
    """The human-readable card: the same facts as card.json."""
    sizes = card["split_sizes"]
    lines = [
        f"# Task `{card['task']}`",
        "",
        str(card["summary"]),
        "",
        f"- Type: {card['task_type']} (keys: {', '.join(card['text_keys'])}, label: "
        f"{card['label_type']})",
        f"- Label meaning: {card['label_meaning']}",
        f"- Split sizes: train {sizes['train']}, dev {sizes['dev']}, test {sizes['test']}",
        f"- Text length: mean {card['text_length']['mean_words']} words per text, "
        f"max {card['text_length']['max_words']}",
        "",
        "## How the examples and labels were made",
        "",
        str(card["construction"]),
        "",
        f"{card['candidates_considered']} candidates were considered; "
        f"{card['candidates_dropped_because_in_corpus']} texts were dropped because they also "
        "occur in the pretraining corpus (no task text may).",
        "",
        *card_tail(card),
    ]
    return "\n".join(lines)


def write_task(
    spec: TaskSpec, result: TaskResult, out_dir: Path, versions: dict[str, str]
) -> dict[str, object]:
    rows_by_split = {split: task_rows(result.examples, spec, split) for split in SPLITS}
    check_splits_are_disjoint(spec, rows_by_split)
    task_dir = out_dir / "tasks" / spec.name
    for split, rows in rows_by_split.items():
        write_jsonl(task_dir / f"{split}.jsonl", rows)
    card = make_card(spec, result, rows_by_split, versions)
    (task_dir / "card.json").write_text(
        json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (task_dir / "card.md").write_text(render_card_markdown(card), encoding="utf-8")
    return card


def check_no_task_text_in_corpus(out_dir: Path) -> None:
    """Re-read what was written: no task text, nor any sentence of four words or more of it,
    may equal a line or sentence of the corpus (after lower-casing and dropping punctuation)."""
    corpus_index = corpus_overlap_index(out_dir)
    for path in sorted((out_dir / "tasks").glob("*/*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            row = json.loads(line)
            for key in ("sentence", "sentence1", "sentence2"):
                if key in row and any(unit in corpus_index for unit in task_units(row[key])):
                    raise BertforgeError(
                        f"{path}:{number}: task text occurs in the pretraining corpus: {row[key]!r}"
                    )


TASK_SPECS = {
    "supersense": TaskSpec(
        name="supersense",
        task_type="single_sentence_classification",
        text_keys=("sentence",),
        packages=("wordnet-base",),
        summary=(
            "Which WordNet lexicographer file (supersense, such as noun.animal or "
            "verb.contact) a WordNet definition was filed in: single-sentence classification "
            "with 15 balanced classes."
        ),
        label_meaning=(
            "the lexicographer file of the synset the definition belongs to, assigned by "
            "WordNet's lexicographers (noun.plant: nouns denoting plants, verb.change: verbs of "
            "size, temperature change, intensifying, ...; see lexnames(5WN))"
        ),
        construction=(
            "Every noun and verb synset of WordNet 3.0 (data.noun, data.verb) gives its "
            "definition (the gloss without its quoted examples) and its lexicographer file "
            "number. Definitions of 3-48 words; a definition shared by several synsets is kept "
            "only if they agree on the file; noun.Tops is left out. The 15 most frequent files "
            "are kept and 400 definitions are drawn from each by a seeded SHA-256 hash of the "
            "text, so the classes are balanced. Splits: seeded hash of the definition, "
            "70/15/15."
        ),
    ),
    "wic": TaskSpec(
        name="wic",
        task_type="sentence_pair_classification",
        text_keys=("sentence1", "sentence2"),
        packages=("wordnet-base",),
        positive_label="same",
        summary=(
            "Word-in-Context: do two sentences use the noun or verb they share in the same "
            "WordNet sense? Sentence-pair binary classification, built as WiC (Pilehvar and "
            "Camacho-Collados, 2019) was built from WordNet examples."
        ),
        label_meaning=(
            "same: both sentences are WordNet's examples of one synset of the word; different: "
            "they are examples of two different synsets (senses) of the word"
        ),
        construction=(
            "From the quoted example sentences of WordNet 3.0 noun and verb glosses. A sentence "
            "is eligible for a single-word lemma of its synset when the lemma or one of its "
            "inflections (regular rules plus WordNet's noun.exc/verb.exc) occurs in it as a "
            "word, so the target word really occurs in both sentences; an example that appears "
            "in two synsets is dropped, and each sentence is given to one lemma only. For each "
            "lemma with eligible examples in at least two of its synsets, 'same' pairs join two "
            "examples of one synset and 'different' pairs join examples of two synsets; every "
            "lemma gives as many of each (at most 8, chosen by seeded hash), so the lemma alone "
            "predicts nothing. Whole lemmas are assigned to a split (seeded hash, 70/15/15), so "
            "no sentence appears in two splits. The target word is marked in both sentences, "
            "as WiC gives the word and its positions: its first occurrence (the lemma or an "
            "inflection, as a whole word) stands between asterisks, e.g. 'a *screen* of trees "
            "afforded privacy'. Whether any model learns the task at the pipeline's budget is "
            "the evaluation report's 'at floor' column (reports/eval.md), not this card."
        ),
    ),
    "glosssim": TaskSpec(
        name="glosssim",
        task_type="sentence_pair_regression",
        text_keys=("sentence1", "sentence2"),
        packages=("wordnet-base",),
        summary=(
            "How similar are the concepts that two WordNet noun definitions define, on "
            "STS-B's 0-5 scale? Sentence-pair regression."
        ),
        label_meaning=(
            "5 x the Wu-Palmer similarity of the two synsets in WordNet's noun taxonomy: 0 for "
            "concepts that share only the root far above them, 5 for the same concept; "
            "siblings typically score above 4"
        ),
        construction=(
            "Score = 5 x Wu-Palmer similarity over the hypernym and instance-hypernym pointers "
            "(@, @i) of WordNet 3.0's data.noun: the maximum over common ancestors c of "
            "2 depth(c) / (steps(a, c) + steps(b, c) + 2 depth(c)), with depth(entity) = 1 and "
            "steps counted along the fewest hypernym links; rounded to 3 decimals. Honest "
            "caveat: the taxonomy is human-made (WordNet's lexicographers placed every synset "
            "under its hypernyms) but the score is a formula over it, not a person's rating of "
            "the two sentences as in STS-B. Definitions of 3-48 words that belong to one "
            "synset only; synsets are assigned to splits by seeded hash (70/15/15), so no "
            "definition appears in two splits. Within a split every synset is paired with a "
            "sibling, a cousin, a synset of its lexicographer file and any synset (seeded "
            "random.Random per split); pairs are then taken in seeded-hash order so that the "
            "five score bins [0,1) ... [4,5] are equally full, each definition in at most two "
            "pairs."
        ),
    ),
    "fortune": TaskSpec(
        name="fortune",
        task_type="single_sentence_classification",
        text_keys=("sentence",),
        packages=("fortunes",),
        summary=(
            "Which fortune-mod file (topic) a fortune was filed in by the fortune-mod curators: "
            "single-sentence classification with 16 classes."
        ),
        label_meaning=(
            "the name of the fortune file the fortune comes from, e.g. computers, politics, "
            "startrek, zippy (Zippy the Pinhead)"
        ),
        construction=(
            "Sixteen topical files of the Debian package fortunes (/usr/share/games/fortunes/: "
            + ", ".join(FORTUNE_FILES)
            + "). Each fortune is put on one line (whitespace collapsed, overstrike sequences "
            "removed, attribution lines kept); only prose of 5-48 words is kept (at least 75% "
            "letters, no ASCII art); a fortune found in two files is dropped; at most 400 per "
            "file, chosen by seeded hash, so the classes are mildly unbalanced. Splits: seeded "
            "hash of the text, 70/15/15."
        ),
    ),
}


# --------------------------------------------------------------------------------------------
# README


def human_bytes(size: int) -> str:
    return f"{size / 1e6:.2f} MB"


def render_readme(
    corpus_stats: Sequence[CorpusStats],
    cards: Sequence[dict[str, object]],
    versions: dict[str, str],
) -> str:
    packages = " ".join(sorted(SOURCES))
    total_raw = sum(stats.uncompressed_bytes for stats in corpus_stats)
    total_xz = sum(stats.compressed_bytes for stats in corpus_stats)
    lines = [
        "# data/raw: the embedded real data",
        "",
        "Generated by `scripts/build_embedded_data.py` from Debian packages; do not edit by "
        "hand. Everything here is real text with redistributable licences: a pretraining corpus "
        "of English prose and fine-tuning tasks whose labels were made by people.",
        "",
        "## Rebuild",
        "",
        "```",
        f"apt-get install -y {packages}",
        ".venv/bin/python scripts/build_embedded_data.py   # --out data/raw",
        "```",
        "",
        "The build is byte-identical for the same package versions (listed below; the builder "
        "warns when the installed ones differ) and the same liblzma; the baseline figures in "
        "the task cards also depend on the scikit-learn version. Every ordering and random "
        "choice comes from a seeded SHA-256 hash or a seeded `random.Random`, never from the "
        "clock or set order.",
        "",
        "## Pretraining corpus: `corpus/<source>.txt.xz`",
        "",
        "Format (the contract `ingest` reads): UTF-8 text; documents separated by exactly one "
        "blank line; no blank line and no control character inside a document; one paragraph "
        "(a verse, a definition, a quotation) per line; documents usually have two sentences "
        "or more (for next-sentence prediction). Documents with fewer than two sentences, and "
        "documents containing a racial slur, are dropped.",
        "",
        "| file | Debian package (version) | licence | documents | lines | sentences/doc "
        "| uncompressed | xz |",
        "|---|---|---|---|---|---|---|---|",
    ]
    sources = {source.name: source for source in CORPUS_SOURCES}
    for stats in corpus_stats:
        source = sources[stats.name]
        package_list = ", ".join(f"{p} ({versions[p]})" for p in source.packages)
        lines.append(
            f"| {stats.name}.txt.xz | {package_list} | {SOURCES[source.packages[0]].licence} | "
            f"{stats.documents} | {stats.lines} | {stats.sentences / stats.documents:.1f} | "
            f"{human_bytes(stats.uncompressed_bytes)} | {human_bytes(stats.compressed_bytes)} |"
        )
    lines += [
        f"| **total** | | | {sum(s.documents for s in corpus_stats)} | "
        f"{sum(s.lines for s in corpus_stats)} | | {human_bytes(total_raw)} | "
        f"{human_bytes(total_xz)} |",
        "",
        "Sentences per document are a rough count (terminal punctuation before a capital).",
        "",
    ]
    for stats in corpus_stats:
        source = sources[stats.name]
        upstream = SOURCES[source.packages[0]].upstream
        lines.append(
            f"- **{stats.name}** ({upstream}): {source.description}. "
            f"{stats.dropped_documents} documents dropped by the filters."
        )
    lines += [
        "",
        "## Fine-tuning tasks: `tasks/<task>/{train,dev,test}.jsonl`",
        "",
        "One JSON object per line: `sentence` (single-sentence tasks) or `sentence1` and "
        "`sentence2` (pair tasks), and `label` (a string for classification, a float for "
        "regression). `card.md`/`card.json` give the source, construction, label balance and "
        "two baselines on test. No text appears in two splits, and no task text (nor any "
        "sentence of it with four words or more) equals a line or sentence of the corpus; the "
        "builder checks both and fails otherwise.",
        "",
        "| task | type | labels | train / dev / test | baselines on test |",
        "|---|---|---|---|---|",
    ]
    for card in cards:
        sizes = card["split_sizes"]
        labels = f"{len(card['labels'])} classes" if "labels" in card else "float in [0, 5]"
        shown = []
        for name, scores in card["baselines"].items():
            metrics = [m for m in ("accuracy", "pearson", "mse") if scores.get(m) is not None]
            shown.append(f"{name} {metrics[0]} {scores[metrics[0]]}")
        lines.append(
            f"| {card['task']} | {card['task_type']} | {labels} | {sizes['train']} / "
            f"{sizes['dev']} / {sizes['test']} | {'; '.join(shown)} |"
        )
    lines += ["", "## Packages and licences", ""]
    for package, source in sorted(SOURCES.items()):
        lines.append(
            f"- `{package}` {versions[package]} (committed files built from "
            f"{source.built_from_version}): {source.licence}. Upstream: {source.upstream}."
        )
    lines += [
        "",
        "GCIDE is distributed under the GNU GPL version 2 or later; `corpus/gcide.txt.xz` is a "
        "modified extract and carries the same licence (its source is the Debian source "
        "package dict-gcide). The WordNet-derived tasks carry WordNet's notice: WordNet 3.0 "
        "Copyright 2006 by Princeton University. All rights reserved. THIS SOFTWARE AND "
        'DATABASE IS PROVIDED "AS IS" AND PRINCETON UNIVERSITY MAKES NO REPRESENTATIONS OR '
        "WARRANTIES, EXPRESS OR IMPLIED. The Bible text, the Jargon File and the Devil's "
        "Dictionary are in the public domain.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Main


def build(out_dir: Path) -> None:
    """Build everything into a sibling temporary directory, then swap it into `out_dir`."""
    for package in sorted(SOURCES):
        require_package_files(package)
    versions = warn_about_version_drift()
    staging = out_dir.with_name(out_dir.name + ".building")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)

    corpus_stats = []
    for source in CORPUS_SOURCES:
        stats = build_corpus_source(source, staging)
        corpus_stats.append(stats)
        print(
            f"corpus {stats.name}: {stats.documents} documents, "
            f"{human_bytes(stats.uncompressed_bytes)} -> {human_bytes(stats.compressed_bytes)} xz",
            flush=True,
        )
    corpus_index = corpus_overlap_index(staging)

    def in_corpus(text: str) -> bool:
        return any(unit in corpus_index for unit in task_units(text))

    nouns, verbs = read_wordnet("n"), read_wordnet("v")
    irregular = {pos: read_inflection_exceptions(pos) for pos in ("n", "v")}
    task_builders = {
        "supersense": lambda: build_supersense({**nouns, **verbs}, in_corpus),
        "wic": lambda: build_wic({**nouns, **verbs}, irregular, in_corpus),
        "glosssim": lambda: build_glosssim(nouns, in_corpus),
        "fortune": lambda: build_fortune(in_corpus),
    }
    cards = []
    for name, build_task in task_builders.items():
        card = write_task(TASK_SPECS[name], build_task(), staging, versions)
        cards.append(card)
        sizes = card["split_sizes"]
        print(
            f"task {name}: train {sizes['train']}, dev {sizes['dev']}, test {sizes['test']}",
            flush=True,
        )
    check_no_task_text_in_corpus(staging)
    (staging / "README.md").write_text(
        render_readme(corpus_stats, cards, versions), encoding="utf-8"
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    for entry in ("corpus", "tasks", "README.md"):
        target = out_dir / entry
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        (staging / entry).rename(target)
    staging.rmdir()
    print(f"wrote {out_dir}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/raw"), help="output directory")
    args = parser.parse_args(argv)
    try:
        build(args.out)
    except BertforgeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
