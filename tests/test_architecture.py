"""docs/architecture.md stays true: every rule it places in a function is there, commented."""

from __future__ import annotations

import importlib
import inspect
import io
import re
import tokenize

import pytest

from tests.support import REPO_ROOT

ARCHITECTURE = REPO_ROOT / "docs" / "architecture.md"
RULE_ROW = re.compile(r"^\| (?P<rule>[^|]+?) \| `(?P<target>bertforge\.[\w.]+)` \|$")


def rule_rows() -> list[tuple[str, str]]:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    section = text.split("## Where each rule lives", 1)[1].split("\n## ", 1)[0]
    return [
        (match["rule"], match["target"])
        for line in section.splitlines()
        if (match := RULE_ROW.match(line))
    ]


def resolve(target: str) -> object:
    """`bertforge.a.b.func` or `bertforge.a.b.Class.method`: import the longest module prefix."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(target)


def has_comment(obj: object) -> bool:
    source = inspect.getsource(obj)
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return any(token.type == tokenize.COMMENT for token in tokens)


def test_the_rules_table_lists_the_recipe():
    rules = " ".join(rule for rule, _ in rule_rows())
    for rule in (
        "80/10/10",
        "whole-word",
        "NSP",
        "truncation of pairs",
        "learning-rate",
        "weight-decay",
        "clipping",
        "DeepSpeed config",
        "checkpoint save",
        "checkpoint resume",
    ):
        assert rule in rules, f"docs/architecture.md lists no rule about {rule!r}"


@pytest.mark.parametrize(("rule", "target"), rule_rows())
def test_each_rule_lives_in_the_named_function_with_a_comment_at_the_rule(rule, target):
    function = resolve(target)
    assert callable(function), f"{target} ({rule}) is not a function"
    assert has_comment(function), f"{target} ({rule}) has no one-line comment at the rule"
