"""Rollouts you can read: an RL stage's sampled completions, with every reward's value, as `rollout` events.

The trainer's reward functions (the stage's, and an environment's `get_reward`) are wrapped in place (names
kept, so TRL's `rewards/<name>/mean` metrics stay); each sees the batch's prompts and completions, and on a
step due for recording the first `samples` completions are stored once every reward function has scored them.
"""
from __future__ import annotations

import functools
import inspect
from typing import Callable

from core.events import EventKind, RolloutTurn


class RolloutRecorder:
    """Collects one batch's rewards per step due (every `every` steps) and stores `samples` rollouts."""

    def __init__(self, stage, every: int, samples: int):
        self.stage, self.every, self.samples = stage, every, samples
        self.names: list[str] = []
        self._recorded_step: int | None = None
        self._batch: tuple[int, dict[str, list]] | None = None  # (id of the completions, name -> values)

    def attach(self, trainer) -> None:
        """Wrap the trainer's synchronous reward functions (TRL runs async ones on its own loop; they go
        unrecorded), each under the name TRL logs it by."""
        pairs = list(zip(trainer.reward_funcs, trainer.reward_func_names))
        self.names = [name for func, name in pairs if not inspect.iscoroutinefunction(func)]
        trainer.reward_funcs = [func if inspect.iscoroutinefunction(func) else self._wrapped(func, name)
                                for func, name in pairs]

    def _wrapped(self, func: Callable, name: str) -> Callable:
        @functools.wraps(func)
        def reward(prompts, completions, **columns):
            values = func(prompts=prompts, completions=completions, **columns)
            self._seen(name, prompts, completions, values)
            return values
        return reward

    def _seen(self, name: str, prompts, completions, values) -> None:
        step = self.stage.current_step()
        due = step == 1 or (step > 1 and step % self.every == 0)
        if not due or step == self._recorded_step:
            return
        if self._batch is None or self._batch[0] != id(completions):
            self._batch = (id(completions), {})
        self._batch[1][name] = list(values)
        if len(self._batch[1]) == len(self.names):
            self._store(step, prompts, completions, self._batch[1])
            self._recorded_step, self._batch = step, None

    def _store(self, step: int, prompts, completions, values: dict[str, list]) -> None:
        for i in range(min(self.samples, len(completions))):
            rewards = {name: _number(values[name][i]) for name in self.names}
            self.stage.emit(EventKind.ROLLOUT, step=step, sample=i, prompt=prompt_text(prompts[i]),
                            turns=turns_of(completions[i]), rewards=rewards,
                            total=sum(v for v in rewards.values() if v is not None))


def prompt_text(prompt) -> str:
    """The last user turn of a conversational prompt, or the text prompt itself."""
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content") or "" for m in prompt if m.get("role") == "user"]
    return users[-1] if users else ""


def turns_of(completion) -> list[RolloutTurn]:
    """A completion as turns: assistant text, tool calls (name and arguments) and tool results."""
    if isinstance(completion, str):
        return [{"role": "assistant", "content": completion}]
    turns = []
    for message in completion:
        turn: RolloutTurn = {"role": message.get("role", "assistant"), "content": _text(message.get("content"))}
        calls = [_call(c) for c in message.get("tool_calls") or []]
        if calls:
            turn["tool_calls"] = calls
        turns.append(turn)
    return turns


def _call(call: dict) -> dict:
    function = call.get("function", call)
    return {"name": function.get("name"), "arguments": function.get("arguments")}


def _text(content) -> str:
    if isinstance(content, list):  # multimodal parts
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content or ""


def _number(value) -> float | None:
    return None if value is None else float(value)
