"""Addressing versions: ``models:/`` URIs, and lookups that name what does exist."""

from __future__ import annotations

import pytest

from bertforge.errors import BertforgeError
from bertforge.registry.store import ModelRef, Registry, parse_model_uri
from tests.factories import add_version, eval_summary


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("models:/bertforge-sst2@champion", ModelRef("bertforge-sst2", alias="champion")),
        ("models:/bertforge-sst2@3", ModelRef("bertforge-sst2", version="3")),
        ("models:/bertforge-sst2@v3", ModelRef("bertforge-sst2", version="3")),
        ("models:/bertforge-sst2/12", ModelRef("bertforge-sst2", version="12")),
        ("models:/bertforge-sst2/latest", ModelRef("bertforge-sst2")),
    ],
)
def test_models_uris_name_a_model_and_a_version_or_alias(uri, expected):
    assert parse_model_uri(uri) == expected


@pytest.mark.parametrize(
    "uri",
    [
        "bertforge-sst2@champion",
        "models:/",
        "models:/bertforge-sst2",
        "models:/@champion",
        "models:/bertforge-sst2@",
        "models:/a/b/c",
        "models:/bertforge-sst2@champ ion",
        "runs:/abc/model",
    ],
)
def test_malformed_models_uris_are_one_line_errors(uri):
    with pytest.raises(BertforgeError, match="models:/"):
        parse_model_uri(uri)


def test_unknown_model_version_and_alias_name_what_exists(store):
    add_version("known", eval_summary(0.8))
    registry = Registry()
    with pytest.raises(BertforgeError, match=r"unknown model 'nope' \(registered: known\)"):
        registry.resolve(ModelRef("nope", alias="champion"))
    with pytest.raises(BertforgeError, match=r"'known' has no version 7 \(versions: 1\)"):
        registry.resolve(ModelRef("known", version="7"))
    with pytest.raises(
        BertforgeError, match=r"'known' has no alias 'champion' \(its aliases: none"
    ):
        registry.resolve(ModelRef("known", alias="champion"))
