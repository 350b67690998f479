"""Compare sentence splitters for the ingest stage: boundary quality on a gold set, and speed.

Quality: ~45 hand-written English passages full of traps (abbreviations such as "Mr.", "e.g.",
"U.S.", decimals, quotes, ellipses, initials, verse references, URLs). Each passage is the gold
sentences joined by one space; a boundary is the position (counted in non-space characters) where
a sentence ends inside the passage. Exact boundary precision, recall and F1 are pooled over all
passages; "passages exact" counts passages split exactly as the gold.

Speed: sentences per second and MB per second on cleaned documents of the real corpus (a
deterministic sample of up to --sample-mb MB), in this process, one core.

Run: python benchmarks/bench_sentence_splitters.py [--corpus 'data/raw/corpus/*.txt.xz']

`score`, `speed` and `print_comparison` are also the Chinese benchmark's
(benchmarks/bench_chinese_splitters.py): one scorer for both languages.
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import time
from collections.abc import Callable, Sequence
from datetime import date

from machine import machine

from bertforge.ingest.cleaning import clean_text
from bertforge.ingest.params import IngestParams, SourceParams
from bertforge.ingest.readers import read_documents
from bertforge.ingest.sentences import make_sentence_splitter
from bertforge.ingest.sources import resolve_sources

SPLITTERS = ("sentencex", "spacy")
WARM_UP = {"en": "Warm up. Once.", "zh": "预热。一次。"}  # a first call, outside the timing
Splitter = Callable[[str], list[str]]

GOLD: list[list[str]] = [
    ["Mr. Smith went to Washington.", "He met Mrs. Jones there."],
    ["Dr. Watson arrived at 5 p.m. on Tuesday.", "Holmes was waiting."],
    ["The U.S. economy grew by 3.5% in 2020.", "Analysts were surprised."],
    ["Many fruits, e.g. apples and pears, grow here.", "Others, i.e. bananas, do not."],
    ['She said, "I will come tomorrow."', "Then she left."],
    ['"Are you sure?" he asked.', "She nodded."],
    ["Wait... what was that?", "Nothing, probably."],
    ["I think... maybe not.", "Let us go."],
    ["J. R. R. Tolkien wrote The Hobbit.", "It was published in 1937."],
    ["John 3:16 is a famous verse.", "It is often quoted."],
    [
        "Genesis 1:1 says: In the beginning God created the heaven and the earth.",
        "Verse 2 continues the story.",
    ],
    [
        "And God said, Let there be light: and there was light.",
        "And God saw the light, that it was good.",
    ],
    ["The price is $4.99 at the store.", "It was $5.49 last week."],
    ["Prof. Brown and Gen. Lee met at St. Paul's Cathedral.", "They talked for hours."],
    ["The meeting is at 10 a.m.", "Please be on time."],
    ["He works for Acme Inc.", "The company is large."],
    ["What a day!", "I am exhausted.", "Are you?"],
    ["See Fig. 3 for details.", "Table 2 lists the results."],
    ["The value of pi is approx. 3.14159.", "It is irrational."],
    ["He was born on Jan. 5, 1990 in St. Louis.", "He moved later."],
    ["The file is named report.v2.final.txt on the server.", "Open it."],
    ["Visit www.example.com for more information.", "It is free."],
    ["Email john.doe@example.org with questions.", "We reply fast."],
    ['"Stop!" she shouted.', '"Now!"'],
    ["The results (see Sec. 4.2) were clear.", "We stopped."],
    ["Ch. 12 begins with a storm.", "The ship sinks."],
    ["No. 10 Downing Street is famous.", "The prime minister lives there."],
    ["She has a Ph.D. in physics.", "Her husband has an M.A. in history."],
    ["It happened in 1066 A.D.", "The battle changed England."],
    ["The U.K. and the E.U. signed a deal.", "It took years."],
    ["Version 2.0.1 fixed the bug.", "Version 2.1 added features."],
    ["He scored 9.5 out of 10.", "The judges agreed."],
    ["Why?", "Because I said so."],
    ["The list included apples, pears, etc.", "Nothing else was bought."],
    ["Lt. Col. Harris saluted.", "The troops marched past."],
    ["'Hello,' said Tom.", "'Goodbye,' said Ann."],
    ["He read vol. 2, pp. 45-67, last night.", "It was dull."],
    ["The temperature was -3.5 degrees.", "It snowed."],
    ["They arrived at approx. 6 o'clock.", "Dinner was served."],
    ["Mt. Everest is 8,849 m high.", "Few climb it."],
    ['The line ends with a quote: "to be or not to be."', "Hamlet said it."],
    ["She asked whether he would come?!", "He did not answer."],
    ["A. Lincoln signed it.", "B. Obama quoted it."],
    ["Mr. and Mrs. T. S. Eliot visited Dr. R. Smith in Oct. 1932."],
    ["The vote was 5 vs. 4 in favor of the motion."],
    ["Psalm 23:1 The Lord is my shepherd; I shall not want."],
]


def boundaries(sentences: list[str]) -> set[int]:
    """Sentence ends inside the passage, as offsets among its non-space characters."""
    ends, position = set(), 0
    for sentence in sentences[:-1]:
        position += len("".join(sentence.split()))
        ends.add(position)
    return ends


def score(split: Splitter, gold: list[list[str]], joiner: str) -> dict[str, float]:
    """Boundary precision, recall and F1 pooled over the `gold` passages (each its sentences
    joined by `joiner`), and the passages split exactly as the gold."""
    true_positives = predicted = gold_total = exact = 0
    for sentences in gold:
        predicted_sentences = split(joiner.join(sentences))
        gold_ends, predicted_ends = boundaries(sentences), boundaries(predicted_sentences)
        true_positives += len(gold_ends & predicted_ends)
        predicted += len(predicted_ends)
        gold_total += len(gold_ends)
        exact += predicted_sentences == sentences
    precision = true_positives / predicted if predicted else 1.0
    recall = true_positives / gold_total
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "exact": exact}


def corpus_sample(pattern: str, sample_mb: float) -> list[str]:
    """Cleaned documents of the corpus, every document kept with probability ~1/4 by its hash,
    until `sample_mb` MB of text."""
    params = IngestParams(
        sources=(SourceParams(path=pattern),),
        text_column="text",
        min_document_chars=0,
        min_sentences=1,
        max_document_chars=10**7,
        language="en",
        holdout_fraction=0.5,
        seed=0,
        num_proc=1,
        rows_per_shard=1,
    )
    texts, size = [], 0
    for document in read_documents(resolve_sources(params), params.max_document_chars):
        text = clean_text(document.text)
        if text and hashlib.sha256(text.encode()).digest()[0] < 64:
            texts.append(text)
            size += len(text.encode())
            if size >= sample_mb * 1e6:
                break
    return texts


def speed(split: Splitter, texts: list[str], warm_up: str) -> tuple[float, float]:
    """Sentences per second and MB per second of `split` over `texts`, after one warm-up call."""
    split(warm_up)
    start = time.perf_counter()
    sentences = sum(len(split(text)) for text in texts)
    seconds = time.perf_counter() - start
    return sentences / seconds, sum(len(text.encode()) for text in texts) / seconds / 1e6


def print_comparison(
    names: Sequence[str], language: str, gold: list[list[str]], joiner: str, texts: list[str]
) -> None:
    """The table of quality on `gold` and speed on `texts`, one row per splitter of `names`
    (one line before it for each optional splitter skipped because it is not installed)."""
    available = []
    for name in names:
        try:
            make_sentence_splitter(name, language)
        except ModuleNotFoundError as error:  # an optional splitter, e.g. spacy (`bench` extra)
            print(f"skipped {name}: {error.name} is not installed (pip install 'bertforge[bench]')")
            continue
        available.append(name)
    print("| splitter | boundary precision | recall | F1 | passages exact | sentences/s | MB/s |")
    print("|---|---|---|---|---|---|---|")
    for name in available:
        quality = score(make_sentence_splitter(name, language), gold, joiner)
        sentences_per_second, megabytes_per_second = speed(
            make_sentence_splitter(name, language), texts, WARM_UP[language]
        )
        print(
            f"| {name} | {quality['precision']:.3f} | {quality['recall']:.3f} | "
            f"{quality['f1']:.3f} | {quality['exact']}/{len(gold)} | "
            f"{sentences_per_second:,.0f} | {megabytes_per_second:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="data/raw/corpus/*.txt.xz")
    parser.add_argument("--sample-mb", type=float, default=2.0)
    args = parser.parse_args()
    texts = corpus_sample(args.corpus, args.sample_mb)
    sample_mb = sum(len(text.encode()) for text in texts) / 1e6
    print(
        f"{machine()}, Python "
        f"{platform.python_version()}, {date.today()}; gold: {len(GOLD)} passages, "
        f"{sum(len(gold) - 1 for gold in GOLD)} boundaries; speed sample: {len(texts)} "
        f"documents, {sample_mb:.2f} MB of {args.corpus}"
    )
    print()
    print_comparison(SPLITTERS, "en", GOLD, " ", texts)


if __name__ == "__main__":
    main()
