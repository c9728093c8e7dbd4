"""Registry and user functions (rewards, tools) as callables, the way core/registry.py checked them at load."""
from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import os
import sys
from pathlib import Path

from core.errors import SpecError
from core.registry import Entry, name_problem, parse_user_function


def load_function(name: str, registry: dict[str, Entry], what: str, sandbox: str = "strict"):
    """The function `name` stands for: a registry entry, `file.py:function` (absolute in a resolved config)
    or `package.module:function` of an installed package. `sandbox: weak` lets a sandboxed reward run on
    the sandbox's weakest barrier (sandboxed tools always need a namespace barrier)."""
    if name in registry:
        entry = registry[name]
        module, _, attr = entry.target.partition(":")
        func = getattr(importlib.import_module(module), attr)
        return _with_weak_sandbox(func) if entry.sandboxed and sandbox == "weak" and _takes_allow_weak(func) else func
    problem = name_problem(name, registry, what, Path.cwd())
    if problem:
        raise SpecError(problem)
    user = parse_user_function(name, Path.cwd())
    try:
        module = _module_from_file(user.file) if user.file else _installed_module(user.module)
        return getattr(module, user.function)
    except (ImportError, AttributeError) as exc:
        raise SpecError(f"cannot load {what} {name!r}: {exc}") from None


def _with_weak_sandbox(func):
    """`func` with the sandbox allowed to run on its weakest barrier (the config said `sandbox: weak`)."""
    return functools.update_wrapper(functools.partial(func, allow_weak=True), func)


def _takes_allow_weak(func) -> bool:
    """Whether `func` has the `allow_weak` switch (code rewards do; a tool's parameters are the model's)."""
    return "allow_weak" in inspect.signature(func).parameters


def _module_from_file(file: Path):
    spec = importlib.util.spec_from_file_location(f"cockpit_user_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _installed_module(name: str):
    """Import `name` with the working directory off sys.path (`python -m` puts it first)."""
    here = {"", os.getcwd()}
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if p not in here]
    try:
        return importlib.import_module(name)
    finally:
        sys.path[:] = saved
