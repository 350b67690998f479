"""bertforge.ingest.sentences: the sentencex splitter, and sentences as the stage writes them."""

from __future__ import annotations

import pytest

from bertforge.ingest.cleaning import clean_text
from bertforge.ingest.documents import document_id
from bertforge.ingest.sentences import make_sentence_splitter
from tests.factories import ingest_params, run_ingest, write_txt


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Mr. Smith paid $3.50 to Dr. Jones. He left at 5 p.m. on Monday.",
            ["Mr. Smith paid $3.50 to Dr. Jones.", "He left at 5 p.m. on Monday."],
        ),
        (
            "The U.S. economy grew, e.g. in tech. Did it? Yes!",
            ["The U.S. economy grew, e.g. in tech.", "Did it?", "Yes!"],
        ),
        ("No final punctuation here", ["No final punctuation here"]),
    ],
)
def test_sentencex_keeps_abbreviations_and_decimals_inside_sentences(text, expected):
    assert make_sentence_splitter("sentencex", "en")(text) == expected


def test_ingested_sentences_are_stripped_and_joined_give_the_cleaned_text(tmp_path):
    text = "First sentence is here.   Second one\tfollows!  Third?"
    write_txt(tmp_path / "a.txt", [text])
    _, train, heldout = run_ingest(ingest_params({"path": str(tmp_path / "a.txt")}), tmp_path / "o")
    (row,) = train + heldout
    assert row["sentences"] == ["First sentence is here.", "Second one follows!", "Third?"]
    assert " ".join(row["sentences"]) == clean_text(text)
    assert row["doc_id"] == document_id(clean_text(text))
