"""GRPO reward functions by name, with TRL's signature: f(prompts, completions, **columns) -> floats."""
from __future__ import annotations

import importlib
import re

from core.errors import SpecError

EQUATION = re.compile(r"^\s*\d+\s*\+\s*\d+\s*=\s*\d+\s*$")
AFTER_EQUALS = re.compile(r"=\s*(-?\d+)")
NUMBER = re.compile(r"^\s*(-?\d+)\s*$")


def completion_text(completion) -> str:
    """A completion as text: plain string, or the content of a conversational completion."""
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion)


def extract_answer(text: str) -> str | None:
    """The number after the last "=", or the whole text when it is just a number."""
    found = AFTER_EQUALS.findall(text)
    if found:
        return found[-1]
    bare = NUMBER.match(text)
    return bare.group(1) if bare else None


def exact_match(prompts, completions, answer, **_) -> list[float]:
    """1.0 when the completion's number equals the row's `answer`."""
    return [float(extract_answer(completion_text(c)) == str(a).strip()) for c, a in zip(completions, answer)]


def format(prompts, completions, **_) -> list[float]:  # noqa: A001  (the name users write in YAML)
    """1.0 when the completion reads like "a+b=c" and nothing else."""
    return [float(bool(EQUATION.match(completion_text(c)))) for c in completions]


REWARDS = {"exact_match": exact_match, "format": format}


def get_rewards(names: list[str]) -> list:
    """Reward functions by registry name, or `package.module:function` for a user's own."""
    return [_reward(name) for name in names]


def _reward(name: str):
    if name in REWARDS:
        return REWARDS[name]
    if ":" in name:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise SpecError(f"cannot import reward {name!r}: {exc}") from None
    raise SpecError(f"unknown reward {name!r}; known: {', '.join(REWARDS)} (or module:function)")
