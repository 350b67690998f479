"""Chinese text in ingest: sentence splitting on 。！？, and joining hard-wrapped lines.

Chinese is written without spaces, and plain-text Chinese is often hard-wrapped in the middle of
a sentence (every ~35 characters): turning those line breaks into spaces, as the cleaning does
for every whitespace run, would put spaces inside words. `join_wrapped_lines` removes a line
break between two characters of a script written without spaces, and leaves every other line
break to the cleaning (a space between two Latin words).

`chinese_splitter` ends a sentence after 。！？ (full width or ASCII) or an ellipsis ……, and keeps
the closing quotes and brackets that follow with it; the ingest's registry offers it as
``zh_rules`` (chosen for ``language: zh`` in benchmarks/bench_chinese_splitters.py, see
docs/ingest.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable

WIDE_CHARACTERS = (
    "\u2e80-\u2fdf"  # CJK radicals, Kangxi radicals
    "\u3000-\u303f"  # CJK symbols and punctuation (、。「」『』【】〔〕…)
    "\u3040-\u30ff"  # hiragana, katakana
    "\u3100-\u312f\u31a0-\u31ff"  # bopomofo, katakana extensions
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"  # CJK ideographs, compatibility ideographs
    "\ufe30-\ufe4f"  # CJK compatibility forms (vertical punctuation)
    "\uff01-\uff60\uffe0-\uffe6"  # full-width forms (！＂＃…，．：；？)
    "\u2018\u2019\u201c\u201d\u2026\u2014"  # quotes, ellipsis and dash as Chinese text uses them
    "\U00020000-\U0003134f"  # CJK ideographs, extensions B-H
)
"""Characters of scripts written without spaces between words (Chinese, Japanese), and their
punctuation. Hangul is not among them: Korean puts spaces between words."""

WRAPPED_LINE_BREAK = re.compile(
    rf"(?<=[{WIDE_CHARACTERS}])[ \t\u3000]*\r?\n[ \t\u3000]*(?=[{WIDE_CHARACTERS}])"
)


def join_wrapped_lines(text: str) -> str:
    """`text` with each line break between two wide characters removed (with the spaces around
    it); the cleaning turns the other line breaks into single spaces."""
    # a line break between two characters of a script without spaces is no word boundary
    return WRAPPED_LINE_BREAK.sub("", text)


SENTENCE_END = re.compile(
    r"(?:[。！？!?]+|…{2,}|\.{3,}"  # a run of 。！？ (full width or ASCII), an ellipsis
    r"|(?<![0-9])\.(?=[ \t]*[\u3400-\u9fff])"  # an ASCII full stop before Chinese
    r"|(?<=[a-z])\.(?=[ \t]+[A-Z]))"  # an English full stop before a capital
    r"[”’」』）》】〕〉\"')\]]*"  # closing quotes and brackets stay with their sentence
)
"""Where a Chinese sentence ends: the stop, then the closing quotes and brackets after it."""


def chinese_splitter(language: str = "zh") -> Callable[[str], list[str]]:
    """A rule-based splitter for Chinese (`language` is accepted for the registry's signature)."""

    def split(text: str) -> list[str]:
        sentences: list[str] = []
        start = 0
        for stop in SENTENCE_END.finditer(text):
            # a stop inside a word of Latin letters or digits (3.5, e.g., v2.0) ends nothing
            if stop.group().startswith((".", "!", "?")) and _inside_latin(text, stop.end()):
                continue
            # nor does the full stop of an abbreviation or an initial (Dr. Smith, U.S.)
            if stop.group()[:2] in (".", '."', ".'", ".)") and _abbreviation(text, stop.start()):
                continue
            sentences.append(text[start : stop.end()])
            start = stop.end()
        sentences.append(text[start:])
        # sentences are stripped and empty ones dropped
        return [sentence for piece in sentences if (sentence := piece.strip())]

    return split


ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "no"})


def _abbreviation(text: str, stop: int) -> bool:
    """Whether the Latin word before the full stop at `stop` is an abbreviation or one letter."""
    word = re.search(r"[A-Za-z]+$", text[:stop])
    return word is not None and (len(word.group()) == 1 or word.group().lower() in ABBREVIATIONS)


def _inside_latin(text: str, end: int) -> bool:
    """Whether an ASCII stop ending at `end` is followed at once by a letter or digit."""
    return end < len(text) and text[end].isascii() and text[end].isalnum()
