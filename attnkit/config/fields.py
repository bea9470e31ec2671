"""Settings as dataclasses: built from parsed YAML or JSON with every mistake named by its key (and its line, for
YAML), and the range checks that their `__post_init__` run.

A setting renamed since a checkpoint or a user's YAML was written still loads under its old name: a dataclass lists
its old names in `RENAMED` (old -> new), and a user's file gets one warning line naming the new one.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import types
import typing
import warnings
from typing import Literal

from attnkit.errors import AttnkitError, AttnkitWarning

T = typing.TypeVar("T")


def at_least(minimum: int, section: str, config: object, *names: str) -> None:
    """Each of `names` (an int setting of `config`) is unset (None) or at least `minimum`."""
    for name in names:
        value = getattr(config, name)
        if value is not None and value < minimum:
            raise AttnkitError(f"{section}.{name} must be at least {minimum}, got {value}")


def in_range(
    section: str,
    config: object,
    name: str,
    low: float,
    high: float | None,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Setting `name` of `config` is unset (None) or within [low, high] (open where said; no high: unbounded)."""
    value = getattr(config, name)
    if value is None:
        return
    below = value <= low if low_open else value < low
    above = high is not None and (value >= high if high_open else value > high)
    if below or above:
        left, right = "(" if low_open else "[", ")" if high_open or high is None else "]"
        raise AttnkitError(
            f"{section}.{name} must be in {left}{low}, {'inf' if high is None else high}{right}, got {value}"
        )


def from_dict(cls: type[T], values: object, where: str, prefix: str = "", warn: bool = False) -> T:
    """Build dataclass `cls` (nested ones too) from parsed JSON/YAML. Errors read "WHERE: PREFIX.KEY: problem",
    e.g. "run.yaml:7: train.lr: expected float, got 'fast'". With `warn`, an old name of a setting (a user's
    file) is read with a warning naming the new one; a checkpoint's config.json is read without."""
    if not isinstance(values, dict):
        raise AttnkitError(f"{where}: {prefix or 'config'}: expected a mapping of fields, got {type(values).__name__}")
    values = _renamed(cls, values, where, prefix, warn)
    unknown = _unknown_keys(cls, values, prefix)
    if unknown:
        names = [name for name, _ in unknown]
        more = "" if all("did you mean" in name for name in names) else "; docs/configuration.md lists every setting"
        line = f":{unknown[0][1]}" if unknown[0][1] is not None else ""
        raise AttnkitError(f"{where}{line}: unknown setting{'s' if len(names) > 1 else ''}: {', '.join(names)}{more}")
    hints = typing.get_type_hints(cls)
    read = values
    values = dict(values)
    for key, value in values.items():
        if isinstance(value, os.PathLike) and value_matches("", hints[key]):  # paths as pathlib.Path from Python
            value = values[key] = os.fspath(value)
        if dataclasses.is_dataclass(hints[key]):
            if value is not None and not isinstance(value, dict):
                names = ", ".join(field.name for field in dataclasses.fields(hints[key]))
                raise AttnkitError(
                    f"{located(where, read, key)}: {prefix}{key}: expected a mapping of {names}, got {value!r}"
                )
            section = value if value is not None else {}
            values[key] = from_dict(hints[key], section, where, f"{prefix}{key}.", warn)
        elif not value_matches(value, hints[key]):
            expected = describe_type(hints[key])
            raise AttnkitError(f"{located(where, read, key)}: {prefix}{key}: expected {expected}, got {value!r}")
    try:
        return cls(**values)
    except AttnkitError as error:  # from __post_init__, whose messages begin with the setting: "train.lr must be..."
        key = str(error).split(" ", 1)[0].removeprefix(prefix)
        raise AttnkitError(f"{located(where, read, key)}: {error}") from None


def _renamed(cls: type, values: dict, where: str, prefix: str, warn: bool) -> dict:
    """`values` with the old names of `cls`'s settings replaced by the new ones (with their lines)."""
    renamed = getattr(cls, "RENAMED", {})
    old = [key for key in values if key in renamed]
    if not old:
        return values
    read, lines = values, dict(getattr(values, "lines", {}))
    values = Located(values)
    for key in old:
        new = renamed[key]
        if new in values:
            raise AttnkitError(
                f"{located(where, read, key)}: {prefix}{key} is the old name of {prefix}{new}; give only {prefix}{new}"
            )
        if warn:
            message = f"{located(where, read, key)}: {prefix}{key} is now called {prefix}{new}; read as that"
            warnings.warn(message, AttnkitWarning, stacklevel=2)
        values[new] = values.pop(key)
        if key in lines:
            lines[new] = lines.pop(key)
    values.lines = lines
    return values


def to_dict(config: object) -> dict:
    return dataclasses.asdict(config)  # type: ignore[call-overload]


class Located(dict):
    """A mapping read from YAML, with the line (from 1) of each of its keys."""

    lines: dict

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.lines = {}

    def __deepcopy__(self, memo: dict) -> Located:
        copied = Located(copy.deepcopy(dict(self), memo))
        copied.lines = dict(self.lines)
        return copied


def located(where: str, mapping: object, key: object) -> str:
    """`where` and the line of `key` in `mapping` if it was read from a YAML file: "run.yaml:7", else "run.yaml"."""
    line = getattr(mapping, "lines", {}).get(key)
    return f"{where}:{line}" if line is not None else where


def _unknown_keys(cls: type, values: dict, prefix: str) -> list[tuple[str, int | None]]:
    """Every key of `values`, and of the sections in it, that `cls` lacks (an old name it knows is not lacking),
    each with a did-you-mean, and its line in the YAML file (None for a key that came from elsewhere)."""
    hints = typing.get_type_hints(cls)
    known = sorted(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    renamed = getattr(cls, "RENAMED", {})
    unknown = []
    lines = getattr(values, "lines", {})
    for key, value in values.items():
        if key not in known and key not in renamed:
            unknown.append((_did_you_mean(str(key), known, prefix), lines.get(key)))
        elif key in known and dataclasses.is_dataclass(hints[key]) and isinstance(value, dict):
            unknown += _unknown_keys(hints[key], value, f"{prefix}{key}.")
    return unknown


def _did_you_mean(key: str, known: list[str], prefix: str) -> str:
    """`prefix.key` with the closest known name (by difflib, or by initials as for lr), e.g.
    "model.layers (did you mean model.num_layers?)"."""
    initials = "".join(word[:1] for word in key.split("_"))
    close = difflib.get_close_matches(key, known, n=1) or [name for name in known if "_" in key and name == initials]
    return f"{prefix}{key}" + (f" (did you mean {prefix}{close[0]}?)" if close else "")


def value_matches(value: object, annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return value in typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(value_matches(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is float:  # JSON writes 1.0 as 1; YAML reads .nan and .inf, which no setting means
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return isinstance(value, list) and all(value_matches(v, item) for v in value)
    if origin is dict:
        key, item = typing.get_args(annotation)
        return isinstance(value, dict) and all(
            value_matches(k, key) and value_matches(v, item) for k, v in value.items()
        )
    return isinstance(value, annotation)  # type: ignore[arg-type]


def describe_type(annotation: object) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if annotation is float:
        return "a finite float"
    return getattr(annotation, "__name__", str(annotation))
