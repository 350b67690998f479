"""bertforge.ingest.cleaning: control and format characters removed, NFC, whitespace collapsed."""

from __future__ import annotations

import numpy as np

from bertforge.ingest.cleaning import (
    clean_text,
    collapse_whitespace,
    normalize_unicode,
    remove_control_characters,
)


def test_clean_text_normalizes_to_nfc():
    decomposed = "Cafe\u0301 nai\u0308ve"
    assert clean_text(decomposed) == "Caf\u00e9 na\u00efve"


def test_clean_text_removes_control_format_and_replacement_characters():
    dirty = "a\x00b\x07c\u200bd\u00ade\ufefff\u200dg\ufffdh\x7fi\x9fj\U000e0001k"
    assert clean_text(dirty) == "abcdefghijk"
    # private use and other printable or unassigned characters are kept
    assert clean_text("x\ue000y\u0378z") == "x\ue000y\u0378z"


def test_clean_text_turns_tabs_newlines_and_runs_of_spaces_into_one_space():
    assert clean_text("  one\ttwo\n\nthree\r\n four\u00a0five\u2028six  ") == (
        "one two three four five six"
    )


def test_clean_text_equals_remove_then_nfc_then_collapse_in_that_order():
    # clean_text reorders the steps for speed; the documented composition must still hold
    alphabet = (
        "ab \t\n\x00\x07\x1f\x85\u00a0\u0301\u0308e\u200b\u200d\u00ad\ufeff\ufffd\u2028\u2000\ue000"
    )
    rng = np.random.default_rng(0)
    for _ in range(3000):
        text = "".join(rng.choice(list(alphabet), size=int(rng.integers(0, 12))))
        expected = collapse_whitespace(normalize_unicode(remove_control_characters(text)))
        assert clean_text(text) == expected, repr(text)
