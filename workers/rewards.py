"""GRPO reward functions with TRL's signature, f(prompts, completions, **columns) -> floats; looked up by the
names core/reward_registry.py checks at load time."""
from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import re
import sys
from pathlib import Path

from core.errors import SpecError
from core.reward_registry import REWARDS, parse_user_reward, reward_problem

EQUATION = re.compile(r"^\s*\d+\s*\+\s*\d+\s*=\s*\d+\s*$")
NUM = r"-?\d[\d,]*(?:\.\d+)?"
THINKING = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL)
MARKED = re.compile(r"####\s*(" + NUM + ")")                 # GSM8K: "#### 72"
BOXED = re.compile(r"\\boxed\{\s*(" + NUM + r")\s*\}")      # MATH style: "\boxed{72}"
AFTER_EQUALS = re.compile(r"=\s*(" + NUM + ")")              # "37+48=85"
BARE = re.compile(r"^\s*(" + NUM + r")\s*\.?\s*$")           # "85"
ANY = re.compile(NUM)
LETTER = re.compile(r"[A-Za-z]")


def completion_text(completion) -> str:
    """A completion as text: a plain string, or what the assistant said in a conversational one (tool
    results are not the policy's answer)."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content") or "" for m in completion if m.get("role", "assistant") == "assistant")


def extract_answer(text: str) -> str | None:
    """The final number a text gives, thinking (`<think>…</think>`) left out: after `####`, in `\\boxed{}`,
    after the last "=", the whole text when it is a number, else in prose (letters present) the last number.
    Commas and a `.0` are normalised away ("1,234.0" -> "1234")."""
    text = THINKING.sub("", text)
    for pattern in (MARKED, BOXED, AFTER_EQUALS):
        found = pattern.findall(text)
        if found:
            return _normal(found[-1])
    bare = BARE.match(text)
    if bare:
        return _normal(bare.group(1))
    numbers = ANY.findall(text) if LETTER.search(text) else []
    return _normal(numbers[-1]) if numbers else None


def _normal(number: str) -> str:
    number = number.replace(",", "")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return "0" if number in ("-0", "") else number


def answers_match(text: str, answer) -> bool:
    """Whether `text` ends with the row's `answer` (a bare number, or a worked GSM8K solution ending "#### 72")."""
    expected = extract_answer(str(answer)) or str(answer).strip()
    return extract_answer(text) == expected


def exact_match(prompts, completions, answer, **_) -> list[float]:
    """1.0 when the completion's final number equals the row's `answer` (see `extract_answer`)."""
    return [float(answers_match(completion_text(c), a)) for c, a in zip(completions, answer)]


def format(prompts, completions, **_) -> list[float]:  # noqa: A001  (the name users write in YAML)
    """1.0 when the completion reads like "a+b=c" and nothing else."""
    return [float(bool(EQUATION.match(completion_text(c)))) for c in completions]


def get_rewards(names: list[str], sandbox: str = "strict") -> list:
    """Reward functions by registry name, `file.py:function` or `package.module:function` (see
    core/reward_registry.py; the resolved config holds file paths absolute); `sandbox` is the
    curriculum's setting (`weak` lets code rewards run on the in-process guard alone)."""
    return [_reward(name, Path.cwd(), sandbox == "weak") for name in names]


def _reward(name: str, base_dir: Path, allow_weak_sandbox: bool):
    if name in REWARDS:
        entry = REWARDS[name]
        module, _, attr = entry.target.partition(":")
        func = getattr(importlib.import_module(module), attr)
        return _with_weak_sandbox(func) if entry.sandboxed and allow_weak_sandbox else func
    problem = reward_problem(name, base_dir)
    if problem:
        raise SpecError(problem)
    user = parse_user_reward(name, base_dir)
    try:
        module = _module_from_file(user.file) if user.file else _installed_module(user.module)
        return getattr(module, user.function)
    except (ImportError, AttributeError) as exc:
        raise SpecError(f"cannot load reward {name!r}: {exc}") from None


def _with_weak_sandbox(func):
    """`func` with the sandbox allowed to run on its weakest barrier (the config said `sandbox: weak`)."""
    return functools.update_wrapper(functools.partial(func, allow_weak=True), func)


def _module_from_file(file: Path):
    spec = importlib.util.spec_from_file_location(f"cockpit_reward_{file.stem}", file)
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
