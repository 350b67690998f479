"""One source of truth per knob: params.yaml, validated once at stage start.

Each stage describes its section as a frozen dataclass. `parse` checks the section against it —
unknown keys, missing keys, types, literal choices — and the dataclass's `__post_init__` checks
ranges and cross-field rules with `require`. Every failure is a `BertforgeError` naming the
parameter as ``params.yaml: <section>.<key> ...``. Every section a stage reads must be in the
file (no built-in defaults stand in for a missing one), and a top-level section no stage reads
is an error, so a misspelt `pretrian:` cannot go unnoticed.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from bertforge.errors import BertforgeError

PARAMS_FILE = Path("params.yaml")
# the sections the stages read: one per stage (finetune@<task> and evaluate share `finetune`)
KNOWN_SECTIONS = ("ingest", "vocab", "examples", "pretrain", "finetune", "evaluate", "register")

T = TypeVar("T")


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """Read the whole params file; a missing or malformed file is a one-line error."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BertforgeError(f"{path}: params file not found") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        first_line = str(error).splitlines()[0] if str(error) else "invalid YAML"
        raise BertforgeError(f"{path}: not valid YAML: {first_line}") from None
    if not isinstance(loaded, dict):
        raise BertforgeError(f"{path}: expected a mapping of sections at the top level")
    return loaded


def load_section(cls: type[T], section: str, path: Path = PARAMS_FILE) -> T:
    """Read `section` of the params file and parse it into `cls`.

    The section must be present, and the file may hold no section outside `KNOWN_SECTIONS`.
    """
    params = load_params(path)
    check_sections(params, path)
    if section not in params:
        raise BertforgeError(f"{path}: section {section!r} is missing")
    return parse(cls, params[section], f"{path}: {section}")


def check_sections(params: Mapping[str, Any], path: Path = PARAMS_FILE) -> None:
    """Every top-level section is one a stage reads; a stray one (a typo) is a one-line error."""
    unknown = sorted(str(name) for name in params if name not in KNOWN_SECTIONS)
    if unknown:
        raise BertforgeError(
            f"{path}: unknown section{'s' if len(unknown) > 1 else ''} "
            f"{', '.join(repr(name) for name in unknown)} (known: {', '.join(KNOWN_SECTIONS)})"
        )


def require(condition: bool, name: str, rule: str, value: Any) -> None:
    """In a params dataclass's `__post_init__`: a one-line error unless `condition` holds.

    `parse` prefixes the message with the file and section, so it reads
    ``params.yaml: vocab.vocab_size must be at least 128, got 5``.
    """
    if not condition:
        raise BertforgeError(f"{name} {rule}, got {value!r}")


def parse(cls: type[T], values: Any, where: str) -> T:
    """Build dataclass `cls` from a mapping, checking keys and types; `where` prefixes errors."""
    if not isinstance(values, Mapping):
        raise BertforgeError(f"{where} must be a mapping, got {type(values).__name__}")
    fields = {field.name: field for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise BertforgeError(
            f"{where}.{unknown[0]} is not a known parameter (known: {', '.join(sorted(fields))})"
        )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        if name in values:
            kwargs[name] = _coerce(values[name], hints[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise BertforgeError(f"{where}.{name} is required but missing")
    try:
        return cls(**kwargs)
    except BertforgeError as error:
        message = str(error)
        prefixed = message if message.startswith(where) else f"{where}.{message}"
        raise BertforgeError(prefixed) from None


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        candidates = [arg for arg in args if arg is not type(None)]
        errors = []
        for candidate in candidates:
            try:
                return _coerce(value, candidate, where)
            except BertforgeError as error:
                errors.append((candidate, str(error)))
        # a list's error is the list alternative's (it names the bad item), not "a number"
        is_list = isinstance(value, list | tuple)
        shaped = [e for c, e in errors if (typing.get_origin(c) in (list, tuple)) == is_list]
        raise BertforgeError((shaped or [e for _, e in errors])[0])
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(arg) for arg in args)
            raise BertforgeError(f"{where} must be one of {choices}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise BertforgeError(f"{where} must be a list, got {value!r}")
        item_hint = args[0] if args else Any
        items = [_coerce(item, item_hint, f"{where}[{index}]") for index, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise BertforgeError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        return parse(hint, value, where)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise BertforgeError(f"{where} must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise BertforgeError(f"{where} must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise BertforgeError(f"{where} must be a number, got {value!r}")
        # inf and nan pass every range check (nan compares false), so they are refused here
        if not math.isfinite(value):
            raise BertforgeError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise BertforgeError(f"{where} must be a string, got {value!r}")
        return value
    raise TypeError(f"unsupported parameter type {hint!r} at {where}")


def flatten(params: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a params dataclass or mapping into dotted keys, for MLflow and digests."""
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        params = dataclasses.asdict(params)
    flat: dict[str, Any] = {}
    if isinstance(params, Mapping):
        for key, value in params.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    if isinstance(params, list | tuple) and any(
        isinstance(item, Mapping) or dataclasses.is_dataclass(item) for item in params
    ):
        for index, item in enumerate(params):
            flat.update(flatten(item, f"{prefix}{index}."))
        return flat
    return {prefix.rstrip("."): params}
