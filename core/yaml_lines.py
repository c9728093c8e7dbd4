"""YAML loading that remembers the file and line of every key, so errors can point at them."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from core.errors import ConfigError

MAX_CONFIG_BYTES = 256 * 1024  # a real curriculum is a few KB; data lives in its own files
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present: about 4x faster


@dataclass
class LocatedYaml:
    """Plain data plus `(file, line)` for each key path, e.g. ("stages", 1, "lora", "r")."""

    data: object
    lines: dict[tuple, tuple[str, int]] = field(default_factory=dict)

    def where(self, path: tuple) -> tuple[str | None, int | None]:
        """The file and line of the deepest known prefix of `path`."""
        for n in range(len(path), -1, -1):
            hit = self.lines.get(tuple(path[:n]))
            if hit:
                return hit
        return None, None

    def line_of(self, path: tuple) -> int | None:
        return self.where(path)[1]

    def merged_over(self, parent: "LocatedYaml") -> "LocatedYaml":
        """This file's data deep-merged over its parent's (mappings merge, lists replace)."""
        data = _deep_merge(parent.data, self.data)
        lines = dict(parent.lines)
        for key in list(lines):
            if _replaced_list(self.data, key):
                del lines[key]
        lines.update(self.lines)
        return LocatedYaml(data, lines)


def _replaced_list(child, key: tuple) -> bool:
    node = child
    for part in key:
        if isinstance(node, list):
            return True
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return False


def _deep_merge(parent, child):
    if isinstance(parent, dict) and isinstance(child, dict):
        out = dict(parent)
        for k, v in child.items():
            out[k] = _deep_merge(parent.get(k), v) if k in parent else v
        return out
    return child


def load_located(path: Path) -> LocatedYaml:
    """Parse one YAML file; oversize files, malformed YAML and non-mapping tops are config errors."""
    text = _read_capped(path)
    try:
        node = yaml.compose(text, Loader=LOADER)
        data = yaml.load(text, Loader=LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"malformed YAML: {problem}", str(path), mark.line + 1 if mark else None) from None
    if not isinstance(data, dict):
        raise ConfigError("the top of a curriculum must be a mapping (name:, model:, stages:)", str(path), 1)
    lines: dict[tuple, tuple[str, int]] = {}
    _walk(node, (), str(path), lines)
    return LocatedYaml(data, lines)


def _read_capped(path: Path) -> str:
    """The file's text; a missing, unreadable, non-regular or oversize file is a config error."""
    try:
        if path.exists() and not path.is_file():
            raise ConfigError("not a regular file", str(path))
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("config file not found", str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror or exc.__class__.__name__}", str(path)) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"config is larger than the limit of {MAX_CONFIG_BYTES:,} bytes "
                          "(data belongs in data files, not in the curriculum)", str(path))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError("cannot read config: not UTF-8 text", str(path)) from None


def _walk(node, prefix: tuple, file: str, lines: dict) -> None:
    lines.setdefault(prefix, (file, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[prefix + (key,)] = (file, key_node.start_mark.line + 1)
            _walk(value_node, prefix + (key,), file, lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[prefix + (i,)] = (file, item.start_mark.line + 1)
            _walk(item, prefix + (i,), file, lines)
