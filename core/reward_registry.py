"""Reward names a curriculum may use, checked at load time without importing any reward code.

A reward is one of:
- a registry name (`exact_match`, `format`, `code_exec`): an entry below, its function in workers/;
- `path/to/file.py:function`: a file the YAML names explicitly (relative to the YAML), loaded by path;
- `package.module:function`: a module of an *installed* distribution (`pip install` it). The working
  directory is never searched, so a `pwn.py` next to a YAML someone sent you is not run.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Reward:
    """One registry reward: where its function lives and the row columns it reads."""

    name: str
    target: str                   # module:function, imported by the worker
    summary: str
    columns: tuple[str, ...] = ()  # data fields each row must carry
    sandboxed: bool = False       # runs model-written code (needs the sandbox; see workers/sandbox.py)


REWARDS: dict[str, Reward] = {r.name: r for r in (
    Reward("exact_match", "workers.rewards:exact_match", "1 when the final number given is the row's answer",
           columns=("answer",)),
    Reward("format", "workers.rewards:format", "1 when the completion reads 'a+b=c' and nothing else"),
    Reward("code_exec", "workers.code_rewards:code_exec",
           "1 when the completion's code passes the row's tests, run in the sandbox", columns=("tests",),
           sandboxed=True),
)}


@dataclass(frozen=True)
class UserReward:
    """A user's reward: a file path or an installed module, and the function in it."""

    file: Path | None
    module: str | None
    function: str


def parse_user_reward(name: str, base_dir: Path) -> UserReward | str:
    """The user reward `name` stands for (a file resolved against `base_dir`), or why it cannot be one."""
    where, sep, function = name.rpartition(":")
    if not sep or not IDENTIFIER.match(function):
        return "a user reward is written file.py:function or package.module:function"
    if where.endswith(".py") or "/" in where:
        file = Path(where).expanduser()
        file = file if file.is_absolute() else base_dir / file
        if not file.is_file():
            return f"reward file {where!r} not found (looked in {file})"
        return UserReward(file.resolve(), None, function)
    if not MODULE.match(where):
        return f"{where!r} is neither a .py file nor a module name"
    top = where.split(".", 1)[0]
    if top not in installed_top_level():
        return (f"module {where!r} is not from an installed package (the working directory is not searched): "
                f"`pip install` its package, or name its file, e.g. ./{top}.py:{function}")
    return UserReward(None, where, function)


@lru_cache(maxsize=1)
def installed_top_level() -> frozenset[str]:
    """Top-level import names of the installed distributions."""
    from importlib.metadata import packages_distributions

    return frozenset(packages_distributions())


def reward_problem(name: str, base_dir: Path) -> str | None:
    """Why `name` cannot be used as a reward (with a "did you mean"), or None when it can."""
    if name in REWARDS:
        return None
    if ":" in name:
        parsed = parse_user_reward(name, base_dir)
        return parsed if isinstance(parsed, str) else None
    hit = difflib.get_close_matches(name, REWARDS, n=1)
    hint = f"did you mean {hit[0]!r}? " if hit else ""
    return f"unknown reward {name!r}; {hint}known: {', '.join(REWARDS)} (or file.py:function, package.module:function)"


def reward_columns(names: list[str]) -> tuple[str, ...]:
    """The row fields the registry rewards among `names` read (user rewards declare none)."""
    return tuple(dict.fromkeys(c for n in names if n in REWARDS for c in REWARDS[n].columns))
