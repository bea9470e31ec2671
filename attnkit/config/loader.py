"""YAML as people write it, read so that every error can name its line: run configurations and `--set` overrides."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import yaml

from attnkit.config.fields import Located
from attnkit.errors import AttnkitError
from attnkit.files import read_text


def read_yaml(path: Path) -> object:
    text = read_text(path)
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise AttnkitError(f"{path}{line}: invalid YAML ({problem})") from None


def apply_override(values: dict, override: str) -> None:
    """Set "train.lr=3e-4" in nested `values`; the value is read as YAML (numbers, true/false, null, text)."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise AttnkitError(f"--set {override}: expected SECTION.KEY=VALUE, e.g. train.lr=3e-4")
    *sections, name = key.split(".")
    target = values
    for section in sections:
        target = target.setdefault(section, {})
        if not isinstance(target, dict):
            raise AttnkitError(f"--set {override}: {section} is not a section")
    try:
        target[name] = yaml.load(text, Loader=_Loader) if text else ""
    except yaml.YAMLError:  # not YAML ("[1, 2"): the text itself, which the setting's type check then judges
        target[name] = text


class _Loader(yaml.SafeLoader):
    """YAML as people write it: PyYAML alone reads 3e-4 as text, since YAML 1.1 wants 3.0e-4. Its mappings
    remember the line of each key, for errors that say where, and a key given twice is an error, not the last
    one silently winning."""


def _located_mapping(loader: _Loader, node: yaml.MappingNode) -> Located:
    keys = [(loader.construct_object(key, deep=True), key) for key, _ in node.value]
    seen: set = set()
    for name, key in keys:
        if not isinstance(name, typing.Hashable):
            continue  # construct_mapping below refuses it
        if name in seen:
            raise yaml.constructor.ConstructorError(None, None, f"{name!r} is given twice", key.start_mark)
        seen.add(name)
    mapping = Located(loader.construct_mapping(node, deep=True))
    mapping.lines = {name: key.start_mark.line + 1 for name, key in keys if isinstance(name, typing.Hashable)}
    return mapping


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _located_mapping)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+)$"),
    list("-+0123456789."),
)
