"""Build the embedded Chinese corpus, data/raw/corpus-zh/, from Debian's fortunes-zh package.

fortunes-zh (GPL-3.0+) holds three fortune files: `chinese` (modern prose: Debian tips, sayings,
short essays, classical quotations), `tang300` (the Three Hundred Tang Poems) and `song100` (a
hundred Song poems). Each becomes one `<name>.txt.xz` in the format the ingest stage reads: UTF-8,
documents separated by one blank line, no blank line inside a document. A document is one
fortune with its lines as the package wraps them (hard-wrapped prose keeps its line breaks: the
ingest option `join_wrapped_lines` joins them), without the terminal colour codes, the
attribution lines, the poem titles and authors, headings, code and tables.

It also builds the Chinese fine-tuning task data/raw/tasks-zh/quotesource/ from the quotations in
`chinese` that the package's curators attributed to a book (`    --《论语》`): which of the five
sources with 50 quotations or more a quotation comes from (`build_task`, `TASK_CARD`). The
attributions are never in the corpus, and neither are the task's dev and test quotations: the
corpus drops every document that holds one (`held_out_keys`, `holds_held_out`); training
quotations stay in it (the card counts the overlap per split).

The build is byte-identical for the same package version, liblzma and scikit-learn (the card's
baselines): the files are read in a fixed order, splits and row orders come from SHA-256 hashes,
nothing is random, and xz stores no timestamp. Run:

    apt-get download fortunes-zh && dpkg-deb -x fortunes-zh_*.deb /tmp/fortunes-zh
    .venv/bin/python scripts/build_chinese_data.py \
        --fortunes /tmp/fortunes-zh/usr/share/games/fortunes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from bertforge.constants import TASK_SPLITS
from bertforge.errors import BertforgeError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from task_card import card_tail  # this folder's

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
    r"|^\s?--\s"  # an attribution line with one space of indent or none ("-- 论语，为政篇")
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


def build_file(source: Path, held_out: frozenset[str]) -> tuple[str, int, int, int]:
    """The corpus text of one fortune file, its documents, the fortunes dropped, and those of
    them dropped for holding a held-out task quotation (`holds_held_out`)."""
    documents: list[str] = []
    seen: set[str] = set()
    dropped = dropped_held_out = 0
    holds = holds_held_out(held_out)
    for fortune in SEPARATOR.split(source.read_text(encoding="utf-8")):
        document = fortune_document(fortune)
        # drop fortunes with too little Chinese, and repeats of an earlier one
        if document is None or document in seen:
            dropped += fortune.strip() != ""
            continue
        # a dev or test quotation of the task is never pretraining text, whole or in part
        if holds(quotation_key(document)):
            dropped, dropped_held_out = dropped + 1, dropped_held_out + 1
            continue
        seen.add(document)
        documents.append(document)
    return "\n\n".join(documents) + "\n", len(documents), dropped, dropped_held_out


def write_xz(path: Path, text: str) -> None:
    """`text` as xz with a fixed preset (xz stores no timestamp: the bytes are stable)."""
    path.write_bytes(lzma.compress(text.encode("utf-8"), format=lzma.FORMAT_XZ, preset=XZ_PRESET))


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(
    fortunes: Path, out: Path, held_out: frozenset[str] = frozenset()
) -> list[dict[str, object]]:
    """Write `<name>.txt.xz` for every fortune file into `out`, without the documents that hold
    a quotation key of `held_out` (`held_out_keys`); returns one summary row each."""
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, object]] = []
    for source_name, name in SOURCES.items():
        text, documents, dropped, dropped_held_out = build_file(fortunes / source_name, held_out)
        path = out / f"{name}.txt.xz"
        write_xz(path, text)
        rows.append(
            {
                "file": path.name,
                "source": source_name,
                "documents": documents,
                "dropped": dropped,
                "dropped_held_out": dropped_held_out,
                "characters": len(text),
                "ideographs": len(IDEOGRAPH.findall(text)),
                "xz_bytes": path.stat().st_size,
                "sha256": sha256_of(path),
            }
        )
    return rows


# --- the fine-tuning task: which book a quotation comes from ----------------------------------

TASK = "quotesource"
TASK_SOURCE = "chinese"  # the fortune file whose quotations carry their book's title
MIN_CLASS_SIZE = 50  # a source with fewer distinct quotations is dropped, not merged
MIN_QUOTE_IDEOGRAPHS = 4  # a quotation needs at least this many CJK ideographs
SHARED_RUN = 10  # characters in a row that a text shares with the corpus: "partly in it"
SPLIT_PERCENT = {"train": 70, "dev": 15}  # the rest is test
LABELS = {
    "谚语": "proverb",
    "论语": "analects",
    "菜根谭": "caigentan",
    "增广贤文": "zengguang",
    "道德经": "daodejing",
}
"""The book title of an attribution → the task's label (an ASCII name, as the English tasks')."""

ATTRIBUTION = re.compile(r"^[ \t]+--\s*(.*?)\s*$")
BOOK_TITLE = re.compile(r"^《([^》]+)》")
WORD_CHARACTER = re.compile(r"\w")


def attributed_quotation(fortune: str) -> tuple[str, str] | None:
    """(book title, text) of a fortune whose last attribution starts with a title in 《》
    (`    --《论语》八佾`: 论语), or None; the text's lines are joined without a space."""
    lines = strip_colour_codes(fortune).split("\n")
    attributions = [match.group(1) for line in lines if (match := ATTRIBUTION.match(line))]
    title = BOOK_TITLE.match(attributions[-1]) if attributions else None
    if title is None:
        return None
    text = ""
    for line in lines:
        if ATTRIBUTION.match(line) or not (line := " ".join(line.split())):
            continue
        # no space where a line break splits Chinese; one between two Latin letters or digits
        if text[-1:].isascii() and text[-1:].isalnum() and line[0].isascii() and line[0].isalnum():
            text += " "
        text += line
    return title.group(1), text


def quotation_key(text: str) -> str:
    """A quotation's identity: its letters, digits and ideographs (punctuation variants are one)."""
    return "".join(WORD_CHARACTER.findall(text)).lower()


def stable_hash(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()[:8], "big")


def split_of(key: str) -> str:
    """train, dev or test by a hash of the quotation's key (70/15/15)."""
    bucket = stable_hash(TASK, "split", key) % 100
    if bucket < SPLIT_PERCENT["train"]:
        return "train"
    return "dev" if bucket < SPLIT_PERCENT["train"] + SPLIT_PERCENT["dev"] else "test"


def task_examples(source: Path, min_class_size: int) -> tuple[list[tuple[str, str]], Counter]:
    """(label, text) of every kept quotation in file order, and the counts of what was dropped
    (by reason, and by source for the sources under `min_class_size`: `source:<title>`)."""
    dropped: Counter = Counter()
    first: dict[str, tuple[str, str]] = {}
    titles_of: dict[str, set[str]] = defaultdict(set)
    for fortune in SEPARATOR.split(source.read_text(encoding="utf-8")):
        quotation = attributed_quotation(fortune)
        if quotation is None:
            continue
        dropped["considered"] += 1
        title, text = quotation
        ideographs = len(IDEOGRAPH.findall(text))
        # a quotation mostly in Chinese, of a few characters at least
        if ideographs < MIN_QUOTE_IDEOGRAPHS or ideographs < 0.5 * len(quotation_key(text)):
            dropped["too_little_chinese"] += 1
            continue
        key = quotation_key(text)
        dropped["repeats"] += key in first
        titles_of[key].add(title)
        first.setdefault(key, (title, text))
    # a quotation attributed to two books has no single label: every copy goes
    conflicting = {key for key, titles in titles_of.items() if len(titles) > 1}
    dropped["attributed_to_two_sources"] = len(conflicting)
    kept = [first[key] for key in first if key not in conflicting]
    sizes = Counter(title for title, _ in kept)
    # too few quotations of a source to learn it from: the source is dropped
    small = {title for title, size in sizes.items() if size < min_class_size}
    dropped["from_sources_under_min_class_size"] = sum(sizes[title] for title in small)
    dropped.update({f"source:{title}": sizes[title] for title in small})
    unnamed = sorted(set(sizes) - small - set(LABELS))
    if unnamed:
        raise BertforgeError(f"{source}: no label name in LABELS for the source(s) {unnamed}")
    return [(LABELS[title], text) for title, text in kept if title not in small], dropped


def held_out_keys(fortunes: Path, min_class_size: int = MIN_CLASS_SIZE) -> frozenset[str]:
    """The quotation keys of the task's dev and test splits: text the corpus must not hold."""
    examples, _ = task_examples(fortunes / TASK_SOURCE, min_class_size)
    keys = (quotation_key(text) for _, text in examples)
    return frozenset(key for key in keys if split_of(key) != "train")


def holds_held_out(held_out: frozenset[str]) -> Callable[[str], bool]:
    """Whether a document's key holds a held-out quotation key whole, or shares `SHARED_RUN`
    characters in a row with one (a quotation that long is held whole only if a run is)."""
    short = [key for key in sorted(held_out) if len(key) < SHARED_RUN]
    runs = {key[i : i + SHARED_RUN] for key in held_out for i in range(len(key) - SHARED_RUN + 1)}

    def holds(document_key: str) -> bool:
        if any(key in document_key for key in short):
            return True
        starts = range(len(document_key) - SHARED_RUN + 1)
        return any(document_key[i : i + SHARED_RUN] in runs for i in starts)

    return holds


def corpus_keys(corpus: Path) -> str:
    """Every corpus-zh document as a quotation key, one a line (for the overlap count)."""
    documents = []
    for name in SOURCES.values():
        text = lzma.decompress((corpus / f"{name}.txt.xz").read_bytes()).decode("utf-8")
        documents += [quotation_key(document) for document in text.split("\n\n")]
    return "\n".join(documents)


def pretraining_overlap(rows: dict[str, list[dict[str, str]]], corpus: str) -> dict[str, dict]:
    """Per split, the texts whose letters and ideographs are inside a corpus document, and
    those that share `SHARED_RUN` of them in a row with one (the first count is part of it)."""
    runs = {
        document[i : i + SHARED_RUN]
        for document in corpus.split("\n")
        for i in range(len(document) - SHARED_RUN + 1)
    }

    def shares_a_run(key: str) -> bool:
        return any(key[i : i + SHARED_RUN] in runs for i in range(len(key) - SHARED_RUN + 1))

    keys = {split: [quotation_key(row["sentence"]) for row in rows[split]] for split in rows}
    return {
        "whole_text": {split: sum(key in corpus for key in keys[split]) for split in keys},
        f"{SHARED_RUN}_characters_in_a_row": {
            split: sum(map(shares_a_run, keys[split])) for split in keys
        },
    }


def write_task_splits(
    examples: list[tuple[str, str]], out: Path
) -> dict[str, list[dict[str, str]]]:
    """train/dev/test.jsonl in `out`, each in a hashed order; every split must hold every label."""
    if not examples:
        raise BertforgeError(f"task {TASK}: no quotation of a source with enough of them")
    rows: dict[str, list[dict[str, str]]] = {split: [] for split in TASK_SPLITS}
    for label, text in sorted(examples, key=lambda e: stable_hash(TASK, "order", e[1])):
        rows[split_of(quotation_key(text))].append({"sentence": text, "label": label})
    out.mkdir(parents=True, exist_ok=True)
    for split, split_rows in rows.items():
        missing = sorted({label for label, _ in examples} - {row["label"] for row in split_rows})
        if missing:
            raise BertforgeError(f"task {TASK}: {split} has no example of {missing}")
        lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in split_rows]
        (out / f"{split}.jsonl").write_text("".join(lines), encoding="utf-8")
    return rows


def task_baselines(out: Path) -> dict[str, dict[str, object]]:
    """The evaluate stage's majority and bag-of-words baselines on the written task (test)."""
    from bertforge.evaluate.baselines import fit_baselines
    from bertforge.finetune.tasks import TaskSpec, load_task

    spec = TaskSpec(
        "embedded", str(out), kind="classification", text_columns=["sentence"], metric="accuracy"
    )
    runs = fit_baselines(load_task(TASK, spec))
    majority = runs["majority"].predictions["test"][0]
    return {
        name: {**({"label": majority} if name == "majority" else run.settings)}
        | {metric: round(run.metrics["test"][metric], 4) for metric in ("accuracy", "macro_f1")}
        for name, run in runs.items()
    }


TASK_CARD = {
    "summary": (
        "Which book or collection a classical Chinese quotation comes from, as the fortunes-zh "
        "curators attributed it: single-sentence classification with 5 classes."
    ),
    "label_meaning": (
        "the source named in the quotation's attribution line: proverb (《谚语》, folk proverbs), "
        "analects (《论语》, the Analects of Confucius), caigentan (《菜根谭》, Hong Zicheng's "
        "Vegetable Roots Discourse, Ming), zengguang (《增广贤文》, a Ming-Qing primer of "
        "proverbs and maxims), daodejing (《道德经》, the Tao Te Ching)"
    ),
    "construction": (
        "The fortunes of the file `chinese` of the Debian package fortunes-zh whose last "
        "attribution line names a book in 《》 (`--《论语》八佾` counts as 论语: chapter names "
        "after the title are ignored, so 论语 also holds the sayings of the Cheng brothers from "
        "the preface of Zhu Xi's commentary, 序说 and 读论语孟子法, that the curators filed under "
        "it). The text is the "
        "fortune without colour codes and attribution lines, its lines joined without a space. "
        "Quotations with fewer than 4 CJK ideographs or under half ideographs are dropped; "
        "quotations are the same when their letters, digits and ideographs are (punctuation "
        "variants are one): a repeat is dropped, and a quotation attributed to two sources is "
        "dropped with every copy; a source with fewer than 50 distinct quotations is dropped "
        "(not merged: no other source is like it). Splits: SHA-256 of the quotation's letters and "
        "ideographs, 70/15/15; rows in a hashed order."
    ),
}


def task_card(
    rows: dict[str, list[dict[str, str]]], dropped: Counter, overlap: dict, out: Path
) -> dict[str, object]:
    """card.json of the task: sizes, balance, overlap with the corpus and the baselines."""
    texts = [row["sentence"] for split_rows in rows.values() for row in split_rows]
    labels = sorted({row["label"] for row in rows["train"]})
    return {
        "task": TASK,
        "task_type": "single_sentence_classification",
        "text_keys": ["sentence"],
        "label_key": "label",
        "label_type": "string",
        "labels": labels,
        **TASK_CARD,
        "sources": [
            {
                "package": "fortunes-zh",
                "version": PACKAGE_VERSION,
                "licence": "GPL-3.0+",
                "upstream": "https://salsa.debian.org/chinese-team/fortunes-zh.git",
            }
        ],
        "split_sizes": {split: len(split_rows) for split, split_rows in rows.items()},
        "label_statistics": {
            split: dict(sorted(Counter(row["label"] for row in split_rows).items()))
            for split, split_rows in rows.items()
        },
        "text_length": {
            "mean_characters": round(sum(map(len, texts)) / len(texts), 2),
            "max_characters": max(map(len, texts)),
        },
        "candidates_considered": dropped["considered"],
        "candidates_dropped": {
            reason: dropped[reason]
            for reason in (
                "too_little_chinese",
                "repeats",  # copies after the first
                "attributed_to_two_sources",
                "from_sources_under_min_class_size",
            )
        },
        "sources_dropped": {
            key.removeprefix("source:"): count
            for key, count in sorted(dropped.items())
            if key.startswith("source:")
        },
        # the text (not its attribution) in a document of data/raw/corpus-zh, whole or in part
        "texts_in_pretraining_corpus": overlap,
        "baselines": task_baselines(out),
        "baseline_protocol": (
            "the evaluate stage's (src/bertforge/evaluate/baselines.py): trained on train, "
            "regularization picked on dev, scored on test; TF-IDF of character unigrams and "
            f"bigrams within runs of Chinese; scikit-learn {sklearn_version()}"
        ),
        "built_by": "scripts/build_chinese_data.py",
    }


def sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def render_task_card(card: dict) -> str:
    """card.md: the facts of card.json for a reader, the overlap with pretraining stated."""
    sizes, overlap = card["split_sizes"], card["texts_in_pretraining_corpus"]
    length = card["text_length"]
    lines = [
        f"# Task `{card['task']}`",
        "",
        card["summary"],
        "",
        f"- Type: {card['task_type']} (keys: sentence, label: string)",
        f"- Label meaning: {card['label_meaning']}",
        f"- Split sizes: train {sizes['train']}, dev {sizes['dev']}, test {sizes['test']}",
        f"- Text length: mean {length['mean_characters']} characters per text, max "
        f"{length['max_characters']} (fine-tuning truncates to `finetune.max_seq_length` tokens, "
        "about one per character)",
        "",
        "## How the examples and labels were made",
        "",
        card["construction"],
        "",
        f"{card['candidates_considered']} attributed quotations were considered; dropped: "
        + ", ".join(
            f"{n} {reason.replace('_', ' ')}" for reason, n in card["candidates_dropped"].items()
        )
        + " (the sources dropped: "
        + ", ".join(f"{title} {n}" for title, n in card["sources_dropped"].items())
        + ").",
        "",
        "## Overlap with pretraining",
        "",
        "**No dev or test quotation is in the Chinese pretraining corpus**: the corpus "
        "(data/raw/corpus-zh/fortunes.txt.xz) is built from the same fortunes without their "
        "attribution lines, and its build drops every document that holds a dev or test "
        "quotation whole or shares "
        f"{SHARED_RUN} characters in a row with one. Training quotations stay in it (never with "
        "their labels), as do other passages of the same books, so pretraining has seen each "
        "source's style but not the texts a model is scored on.",
        "",
        f"| split | texts | whole text in a corpus document | {SHARED_RUN}+ characters in a row "
        "shared with one |",
        "|---|---|---|---|",
        *(
            f"| {split} | {sizes[split]} | {overlap['whole_text'][split]} | "
            f"{overlap[f'{SHARED_RUN}_characters_in_a_row'][split]} |"
            for split in TASK_SPLITS
        ),
        "",
        "Characters are compared without punctuation and spaces.",
        "",
        *card_tail(card),
    ]
    return "\n".join(lines)


def build_task(
    fortunes: Path, corpus: Path, out: Path, min_class_size: int = MIN_CLASS_SIZE
) -> dict[str, object]:
    """Write tasks-zh/<TASK>/{train,dev,test}.jsonl, card.json and card.md into `out`; the
    overlap is counted against the corpus files already written in `corpus`, which must hold
    no dev or test quotation (`build` with `held_out_keys`)."""
    examples, dropped = task_examples(fortunes / TASK_SOURCE, min_class_size)
    task_dir = out / TASK
    rows = write_task_splits(examples, task_dir)
    overlap = pretraining_overlap(rows, corpus_keys(corpus))
    # a dev/test quotation in pretraining would make a pretrained model's score partly recall
    if any(counts[split] for counts in overlap.values() for split in ("dev", "test")):
        raise BertforgeError(f"{corpus}: holds dev/test quotations of {TASK}: {overlap}")
    card = task_card(rows, dropped, overlap, task_dir)
    (task_dir / "card.json").write_text(
        json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (task_dir / "card.md").write_text(render_task_card(card), encoding="utf-8")
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fortunes", type=Path, default=Path("/usr/share/games/fortunes"))
    parser.add_argument("--out", type=Path, default=Path("data/raw/corpus-zh"))
    parser.add_argument("--tasks-out", type=Path, default=Path("data/raw/tasks-zh"))
    args = parser.parse_args()
    print(f"fortunes-zh {PACKAGE_VERSION} expected; files from {args.fortunes}")
    held_out = held_out_keys(args.fortunes)
    print(
        "| file | fortune file | documents | dropped (of them: dev/test text) | characters | "
        "ideographs | xz | sha256 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in build(args.fortunes, args.out, held_out):
        print(
            f"| {row['file']} | {row['source']} | {row['documents']} | {row['dropped']} "
            f"({row['dropped_held_out']}) | "
            f"{row['characters']:,} | {row['ideographs']:,} | {row['xz_bytes']:,} B | "
            f"{str(row['sha256'])[:16]} |"
        )
    card = build_task(args.fortunes, args.out, args.tasks_out)
    sizes, baselines = card["split_sizes"], card["baselines"]
    print()
    print("| task | labels | train / dev / test | in corpus (test) | baselines on test |")
    print("|---|---|---|---|---|")
    print(
        f"| {TASK} | {len(card['labels'])} classes | {sizes['train']} / {sizes['dev']} / "
        f"{sizes['test']} | {card['texts_in_pretraining_corpus']['whole_text']['test']} of "
        f"{sizes['test']} | "
        f"majority accuracy {baselines['majority']['accuracy']}; bag_of_words accuracy "
        f"{baselines['bag_of_words']['accuracy']} |"
    )


if __name__ == "__main__":
    main()
