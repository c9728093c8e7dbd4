"""GRPO reward functions with TRL's signature, f(prompts, completions, **columns) -> floats; looked up by the
names core/registry.py checks at load time."""
from __future__ import annotations

import re

from core.registry import REWARDS
from workers.functions import load_function

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


def tool_use(prompts, completions, **_) -> list[float]:
    """1.0 when the completion called a tool and no tool answered with an error, else 0.0."""
    return [float(_called_tools(c) and not _tool_failed(c)) for c in completions]


def _called_tools(completion) -> bool:
    return not isinstance(completion, str) and any(m.get("tool_calls") for m in completion)


def _tool_failed(completion) -> bool:
    """TRL answers a failed call (exception, unknown tool) with a tool turn holding {'error': ...}."""
    return any(m.get("role") == "tool" and str(m.get("content", "")).startswith("{'error'") for m in completion)


def get_rewards(names: list[str], sandbox: str = "strict") -> list:
    """Reward functions by registry name, `file.py:function` or `package.module:function` (see
    core/registry.py); `sandbox` is the curriculum's setting (`weak` lets code rewards run on the
    in-process guard alone)."""
    return [load_function(name, REWARDS, "reward", sandbox) for name in names]
