"""Built-in environments for RL stages (`environment:` in a grpo stage; TRL's `environment_factory`).

TRL makes one instance per rollout and calls `reset(**row)` before each generation; the public methods
are the policy's tools (their docstrings are the schemas it sees) and `get_reward()` scores the rollout
from what happened inside the environment, next to the stage's reward functions.
"""
from __future__ import annotations

from workers.rewards import answers_match
from workers.tools import calculator as evaluate


class ArithmeticEnv:
    """A calculator that remembers its results: the reward is 1 when one of them is the row's answer, so the
    policy earns it by asking the right question, whatever it writes afterwards."""

    def __init__(self):
        self.answer: str | None = None
        self.results: list[str] = []

    def reset(self, answer=None, **_row) -> None:
        self.answer, self.results = None if answer is None else str(answer), []

    def calculator(self, expression: str) -> str:
        """Evaluate an arithmetic expression.

        Args:
            expression: Numbers with + - * / and parentheses, e.g. "1234+5678".

        Returns:
            The value of the expression.
        """
        result = evaluate(expression)
        self.results.append(result)
        return result

    def get_reward(self) -> float:
        return float(self.answer is not None and any(answers_match(r, self.answer) for r in self.results))
