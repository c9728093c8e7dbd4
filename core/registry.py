"""The names a curriculum may use for rewards, tools and environments, checked at load time without importing
their code.

A reward, a tool or an environment is one of:
- a registry name (below), its function (an environment: its class) in workers/;
- `path/to/file.py:function`: a file the YAML names explicitly (relative to the YAML), loaded by path;
- `package.module:function`: a module of an *installed* distribution (`pip install` it). The working
  directory is never searched, so a `pwn.py` next to a YAML someone sent you is not run.
"""
from __future__ import annotations

import difflib
import re
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class Entry:
    """One registry function: where it lives, what it does, the row columns it reads."""

    name: str
    target: str                    # module:function, imported by the worker
    summary: str
    columns: tuple[str, ...] = ()  # data fields each row must carry (rewards)
    sandboxed: bool = False        # runs model-written code (needs the sandbox; see workers/sandbox.py)
    requires: tuple[str, ...] = ()  # executables on PATH: "go", "node>=22.6" (by --version), "node>=22.6|tsc"
    toolchain: str = ""            # what to install when one is missing, e.g. "the Go toolchain"


REWARDS: dict[str, Entry] = {e.name: e for e in (
    Entry("exact_match", "workers.rewards:exact_match", "1 when the final number given is the row's answer",
          columns=("answer",)),
    Entry("format", "workers.rewards:format", "1 when the completion reads 'a+b=c' and nothing else"),
    Entry("code_exec", "workers.code_rewards:code_exec",
          "1 when the completion's code passes the row's tests, run in the sandbox", columns=("tests",),
          sandboxed=True),
    Entry("code_exec_rust", "workers.code_rewards:code_exec_rust",
          "1 when the completion's Rust code compiles (rustc) and passes the row's tests, run in the sandbox",
          columns=("tests",), sandboxed=True, requires=("rustc", "cc"),
          toolchain="the Rust toolchain (rustup) and a C linker (cc)"),
    Entry("code_exec_go", "workers.code_rewards:code_exec_go",
          "1 when the completion's Go code compiles and passes the row's tests (go test), run in the sandbox",
          columns=("tests",), sandboxed=True, requires=("go",), toolchain="the Go toolchain"),
    Entry("code_exec_typescript", "workers.code_rewards:code_exec_typescript",
          "1 when the completion's TypeScript runs on node (types stripped, or compiled by tsc) and passes "
          "the row's tests, run in the sandbox", columns=("tests",), sandboxed=True,
          requires=("node", "node>=22.6|tsc"), toolchain="Node.js 22.6+ (or TypeScript: npm install -g typescript)"),
    Entry("tool_use", "workers.rewards:tool_use", "1 when the completion called a tool and every call succeeded"),
)}

TOOLS: dict[str, Entry] = {e.name: e for e in (
    Entry("calculator", "workers.tools:calculator", "evaluates + - * / ( ) on numbers"),
    Entry("python", "workers.tools:python", "runs Python code in the sandbox and returns what it prints",
          sandboxed=True),
)}

ENVIRONMENTS: dict[str, Entry] = {e.name: e for e in (
    Entry("arithmetic", "workers.environments:ArithmeticEnv",
          "a calculator the policy calls; reward 1 when a result it got is the row's answer", columns=("answer",)),
)}


@dataclass(frozen=True)
class UserFunction:
    """A user's reward or tool: a file path or an installed module, and the function in it."""

    file: Path | None
    module: str | None
    function: str


def parse_user_function(name: str, base_dir: Path) -> UserFunction | str:
    """The user function `name` stands for (a file resolved against `base_dir`), or why it cannot be one."""
    where, sep, function = name.rpartition(":")
    if not sep or not IDENTIFIER.match(function):
        return "write file.py:function or package.module:function"
    if where.endswith(".py") or "/" in where:
        file = Path(where).expanduser()
        file = file if file.is_absolute() else base_dir / file
        if not file.is_file():
            return f"file {where!r} not found (looked in {file})"
        return UserFunction(file.resolve(), None, function)
    if not MODULE.match(where):
        return f"{where!r} is neither a .py file nor a module name"
    top = where.split(".", 1)[0]
    if top not in installed_top_level():
        return (f"module {where!r} is not from an installed package (the working directory is not searched): "
                f"`pip install` its package, or name its file, e.g. ./{top}.py:{function}")
    return UserFunction(None, where, function)


@lru_cache(maxsize=1)
def installed_top_level() -> frozenset[str]:
    """Top-level import names of the installed distributions."""
    from importlib.metadata import packages_distributions

    return frozenset(packages_distributions())


def name_problem(name: str, registry: dict[str, Entry], what: str, base_dir: Path) -> str | None:
    """Why `name` cannot be used as a `what` ("reward", "tool") from `registry`, with a "did you mean"; None
    when it can."""
    if name in registry:
        return None
    if ":" in name:
        parsed = parse_user_function(name, base_dir)
        return f"{what} {name!r}: {parsed}" if isinstance(parsed, str) else None
    hit = difflib.get_close_matches(name, registry, n=1)
    hint = f"did you mean {hit[0]!r}? " if hit else ""
    obj = "Class" if what == "environment" else "function"
    return f"unknown {what} {name!r}; {hint}known: {', '.join(registry)} (or file.py:{obj}, package.module:{obj})"


def requirement_problem(entry: Entry) -> str | None:
    """Why `entry`'s toolchain is not usable here, as a whole sentence naming it, e.g. "code_exec_go needs
    'go' on PATH (not found); install the Go toolchain or drop the reward"; None when every requirement is
    met. Each requirement is met by one of its '|' alternatives: an executable on PATH, at least the
    version given after '>=' (the first x.y in its `--version` output)."""
    for requirement in entry.requires:
        alternatives = [alt.partition(">=")[::2] for alt in requirement.split("|")]
        if any(_tool_ok(exe, minimum) for exe, minimum in alternatives):
            continue
        wanted = " or ".join(f"{exe!r}" + (f" {minimum}+" if minimum else "") for exe, minimum in alternatives)
        found = "; ".join((f"{exe}: " if len(alternatives) > 1 else "") + _tool_found(exe)
                          for exe, _ in alternatives)
        hint = f"install {entry.toolchain}" if entry.toolchain else "install it"
        return f"{entry.name} needs {wanted} on PATH ({found}); {hint} or drop the reward"
    return None


def tool_version(exe: str) -> tuple[int, ...] | None:
    """The version `exe --version` prints (e.g. (20, 20, 2) for node's "v20.20.2"), None when it is not on
    PATH or prints none."""
    path = shutil.which(exe)
    return _version_of(str(Path(path).resolve())) if path else None


@lru_cache(maxsize=32)
def _version_of(path: str) -> tuple[int, ...] | None:
    try:
        done = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", done.stdout + done.stderr)
    return tuple(int(n) for n in found.groups() if n is not None) if found else None


def _tool_ok(exe: str, minimum: str) -> bool:
    if not minimum:
        return shutil.which(exe) is not None
    version = tool_version(exe)
    return version is not None and version >= tuple(int(n) for n in minimum.split("."))


def _tool_found(exe: str) -> str:
    if not shutil.which(exe):
        return "not found"
    version = tool_version(exe)
    return "found " + (".".join(map(str, version)) if version else "no version")


def reward_columns(names: list[str], registry: dict[str, Entry] = REWARDS) -> tuple[str, ...]:
    """The row fields the registry rewards (or environments) among `names` read (user ones declare none)."""
    return tuple(dict.fromkeys(c for n in names if n in registry for c in registry[n].columns))


def absolute_function(name: str, registry: dict[str, Entry], base_dir: Path) -> str:
    """`file.py:function` with the file's absolute path; registry and module names as they are."""
    if ":" not in name or name in registry:
        return name
    user = parse_user_function(name, base_dir)
    return f"{user.file}:{user.function}" if isinstance(user, UserFunction) and user.file else name
