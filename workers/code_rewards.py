"""Execution rewards for model-written code (MBPP style), each program run in the sandbox."""
from __future__ import annotations

import re

from workers.rewards import completion_text
from workers.sandbox import SandboxLimits, run_untrusted

CODE_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)
LIMITS = SandboxLimits(wall_s=5.0, memory_mb=512, processes=32, output_bytes=64_000)


def extract_code(text: str) -> str:
    """The first fenced code block, or the whole text when there is none."""
    found = CODE_BLOCK.search(text)
    return found.group(1) if found else text


def program_with_tests(code: str, tests) -> str:
    """The candidate code followed by the row's tests (a list of assert lines or one string)."""
    lines = tests if isinstance(tests, (list, tuple)) else [tests]
    return code.rstrip() + "\n\n" + "\n".join(str(t) for t in lines) + "\n"


def code_exec(prompts, completions, tests, allow_weak: bool = False, **_) -> list[float]:
    """1.0 when the completion's code passes every test of its row in the sandbox, else 0.0.
    `allow_weak` (config `sandbox: weak`) lets it run where the sandbox has only its weakest barrier."""
    rewards = []
    for completion, row_tests in zip(completions, tests):
        program = program_with_tests(extract_code(completion_text(completion)), row_tests)
        rewards.append(1.0 if run_untrusted(program, LIMITS, allow_weak=allow_weak).ok else 0.0)
    return rewards
