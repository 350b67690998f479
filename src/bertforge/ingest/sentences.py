"""Sentence splitting: the chosen splitter and the registry of the ones compared.

sentencex was chosen in benchmarks/bench_sentence_splitters.py (see docs/ingest.md); another
splitter is one function added to `SENTENCE_SPLITTERS`. Every splitter strips its sentences and
drops empty ones, so joining them with spaces gives back the cleaned text.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import sentencex

from bertforge.ingest.zh import chinese_splitter

SENTENCE_SPLITTER = "sentencex"  # chosen in benchmarks/bench_sentence_splitters.py

SentenceSplitter = Callable[[str], list[str]]


def sentencex_splitter(language: str) -> SentenceSplitter:
    """Rule-based splitter of Wikimedia's sentencex (Rust), with per-language abbreviations."""

    def split(text: str) -> list[str]:
        # sentences are stripped and empty ones dropped
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
        # sentences are stripped and empty ones dropped
        return [sentence for span in nlp(text).sents if (sentence := span.text.strip())]

    return split


SENTENCE_SPLITTERS: dict[str, Callable[[str], SentenceSplitter]] = {
    "sentencex": sentencex_splitter,
    "spacy": spacy_splitter,
    "zh_rules": chinese_splitter,
}
LANGUAGE_SPLITTERS = {"zh": "zh_rules"}  # chosen in benchmarks/bench_chinese_splitters.py


def splitter_for(language: str) -> str:
    """The splitter chosen for `language`: its own where one was measured best, else sentencex."""
    return LANGUAGE_SPLITTERS.get(language, SENTENCE_SPLITTER)


@functools.cache
def make_sentence_splitter(name: str, language: str) -> SentenceSplitter:
    """The splitter `name` for `language`, built once per process."""
    return SENTENCE_SPLITTERS[name](language)
