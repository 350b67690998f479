"""bertforge.ingest.sources: globs in sorted order; missing paths and unknown types fail first."""

from __future__ import annotations

import pytest

from bertforge.errors import BertforgeError
from bertforge.ingest.sources import resolve_sources
from tests.factories import ingest_params, write_txt


def test_glob_sources_expand_in_sorted_order(tmp_path):
    for name in ("c", "a", "b"):
        write_txt(tmp_path / f"{name}.txt", [f"Document from {name}. It is long enough."])
    params = ingest_params({"path": str(tmp_path / "*.txt")})
    assert [source.name for source in resolve_sources(params)] == [
        (tmp_path / f"{name}.txt").as_posix() for name in "abc"
    ]


def test_missing_path_is_an_error_naming_it(tmp_path):
    with pytest.raises(BertforgeError, match=r"nowhere\.txt: file not found"):
        resolve_sources(ingest_params({"path": str(tmp_path / "nowhere.txt")}))


def test_glob_matching_nothing_is_an_error_naming_the_pattern(tmp_path):
    with pytest.raises(
        BertforgeError, match=r"ingest.sources\[0\].path: no file matches .*\*\.txt"
    ):
        resolve_sources(ingest_params({"path": str(tmp_path / "*.txt")}))


def test_unsupported_file_type_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "notes.docx"
    path.write_bytes(b"PK")
    with pytest.raises(BertforgeError, match=r"notes\.docx: unsupported file type"):
        resolve_sources(ingest_params({"path": str(path)}))
