"""`--set KEY=VALUE` overrides, applied to the merged curriculum YAML before it is validated."""
from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass
from typing import Iterable

import yaml

from core.errors import ConfigError
from core.yaml_lines import LocatedYaml

_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


@dataclass(frozen=True)
class Override:
    """One `--set KEY=VALUE`: the text as given, its dotted key and its parsed value."""

    text: str
    key: str
    value: object

    @property
    def label(self) -> str:
        """Where errors in the overridden value say they come from."""
        return f"--set {self.key}"


def parse_override(text: str) -> Override:
    """`KEY=VALUE`, VALUE read as YAML; numbers PyYAML keeps as strings (`1e-3`) become floats."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or "" in key.split("."):
        raise ConfigError("expected KEY=VALUE with a dotted KEY, e.g. stages.sft.train.steps=50", f"--set {text}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(f"VALUE is not valid YAML: {getattr(exc, 'problem', None) or exc}", f"--set {text}") from None
    if isinstance(value, str) and _NUMBER.fullmatch(raw.strip()):
        value = float(value)
    return Override(text, key, value)


def apply_overrides(data: dict, overrides: Iterable[Override]) -> tuple[dict, list[tuple[tuple, Override]]]:
    """A copy of `data` with every override set, and the path each one resolved to (stage names -> indexes)."""
    data = copy.deepcopy(data)
    return data, [(_set(data, o), o) for o in overrides]


def with_overrides(located: LocatedYaml, texts: Iterable[str]) -> LocatedYaml:
    """`located` with the `--set` texts applied; overridden and created keys are located at their override."""
    data, resolved = apply_overrides(located.data, [parse_override(t) for t in texts])
    lines = dict(located.lines)
    for path, o in resolved:
        for key in [k for k in lines if k[:len(path)] == path]:
            del lines[key]
        for n in range(1, len(path) + 1):
            lines.setdefault(path[:n], (o.label, None))
    return LocatedYaml(data, lines)


def _set(data: dict, o: Override) -> tuple:
    """Set `o.value` at `o.key` inside `data`, creating missing mappings; the resolved path."""
    parts = o.key.split(".")
    node, path = data, ()
    for i, part in enumerate(parts):
        key = _step(node, part, parts[:i], o)
        if i == len(parts) - 1:
            node[key] = o.value
        elif isinstance(node, dict) and node.get(key) is None:
            node[key] = {}
        node, path = node[key], path + (key,)
    return path


def _step(node, part: str, above: list[str], o: Override):
    """The key or index `part` names in `node`: a list item by its `name:` first, then by index."""
    if isinstance(node, dict):
        return part
    where = ".".join(above)
    if not isinstance(node, list):
        raise ConfigError(f"{where} is {node!r}, not a mapping or a list", f"--set {o.text}")
    for i, item in enumerate(node):
        if isinstance(item, dict) and item.get("name") == part:
            return i
    if part.isdigit() and int(part) < len(node):
        return int(part)
    what = "stage" if above == ["stages"] else f"item in {where}"
    if part.isdigit():
        raise ConfigError(f"no {what} {part} (there are {len(node)}, counted from 0)", f"--set {o.text}")
    names = [str(item["name"]) for item in node if isinstance(item, dict) and "name" in item]
    hint = difflib.get_close_matches(part, names, n=1)
    raise ConfigError(f"no {what} named {part!r}" + (f" (did you mean {hint[0]!r}?)" if hint else ""),
                      f"--set {o.text}")
