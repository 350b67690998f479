"""Unicode cleanup of a document: what is hashed, filtered and split into sentences.

clean_text(text) = collapse_whitespace(normalize_unicode(remove_control_characters(text))):
control, format and replacement characters removed, NFC, every run of whitespace one space.
The character classes come from Python's `unicodedata`, so the output is byte-identical for the
same Python minor version.
"""

from __future__ import annotations

import unicodedata


def is_removed_character(character: str) -> bool:
    """Control characters that are not whitespace, format characters, surrogates and U+FFFD.

    Whitespace controls (tab, newline, CR, …) are left to `collapse_whitespace`, which turns them
    into spaces. Format characters (Cf: zero-width space/joiners, soft hyphen, BOM, bidi marks)
    are removed as BERT's own tokenizer does, so the vocabulary sees what the model will see.
    """
    # U+FFFD, the trace of an earlier bad decode, is removed
    if character == "\ufffd":
        return True
    # Cc (controls), Cf (format) and Cs (surrogates) are removed, whitespace controls are not
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
    # composed (NFC) form, so that "e" + U+0301 and "é" are the same text
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
