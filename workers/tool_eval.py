"""Held-out answers with tools at hand: greedy generation, tool calls parsed as TRL parses them in GRPO,
the tools run and their results appended, until the model answers or `max_calls` rounds have passed."""
from __future__ import annotations

from typing import Callable

from core.config import EvalSpec
from workers.generation import generate_ids
from workers.rewards import answers_match
from workers.tools import get_tools


def tool_accuracy(model, tokenizer, rows: list[dict], spec: EvalSpec) -> dict:
    """eval/accuracy of answers given with the eval's tools at hand, and eval/tool_calls per answer."""
    conversations = [_question(row) for row in rows]
    answered = answers_with_tools(model, tokenizer, conversations, get_tools(spec.tools), spec.max_new_tokens,
                                  spec.max_tool_calls, spec.batch_size)
    correct = [answers_match(text, row["answer"]) for (text, _), row in zip(answered, rows)]
    examples = [{"prompt": c[-1]["content"], "output": text, "tool_calls": n, "answer": str(row["answer"]),
                 "correct": ok} for c, (text, n), row, ok in zip(conversations, answered, rows, correct)][:5]
    data = {"samples": len(rows), "format": "chat"}
    return {"eval/accuracy": (sum(correct) / max(1, len(rows)), data | {"examples": examples}),
            "eval/tool_calls": (sum(n for _, n in answered) / max(1, len(rows)), data)}


def _question(row: dict) -> list[dict]:
    """The row's conversation up to the question (a reference answer turn left out)."""
    messages = row.get("messages") or row["prompt"]
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return messages[:-1] if messages[-1]["role"] == "assistant" else list(messages)


def answers_with_tools(model, tokenizer, conversations: list[list[dict]], tools: list[Callable],
                       max_new_tokens: int, max_calls: int, batch_size: int) -> list[tuple[str, int]]:
    """For each conversation: the model's final assistant text and how many tools it called."""
    from trl.chat_template_utils import add_response_schema

    add_response_schema(tokenizer)  # raises for a chat template TRL cannot parse tool calls from
    convs = [list(c) for c in conversations]
    finals, calls = [""] * len(convs), [0] * len(convs)
    active = list(range(len(convs)))
    for round_ in range(max_calls + 1):
        waiting = []
        for start in range(0, len(active), batch_size):
            batch = active[start:start + batch_size]
            for i, message in zip(batch, _next_turns(model, tokenizer, [convs[i] for i in batch], tools,
                                                     max_new_tokens)):
                convs[i].append(message)
                if message.get("tool_calls") and round_ < max_calls:
                    results = [_call(tools, c) for c in message["tool_calls"]]
                    convs[i] += [{"role": "tool", "name": name, "content": out} for name, out in results]
                    calls[i] += len(results)
                    waiting.append(i)
                else:
                    finals[i] = message.get("content") or ""
        active = waiting
    return list(zip(finals, calls))


def _next_turns(model, tokenizer, convs: list[list[dict]], tools: list[Callable], max_new_tokens: int) -> list[dict]:
    """One generated assistant turn per conversation, parsed into content and tool calls."""
    from trl.chat_template_utils import parse_response

    template = _training_template(tokenizer)
    prompts = [tokenizer.apply_chat_template(c, tools=tools, add_generation_prompt=True, tokenize=False,
                                             chat_template=template) for c in convs]
    outputs = generate_ids(model, tokenizer, prompts, max_new_tokens)
    prefixes = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    return [parse_response(tokenizer, ids, prefix=prefix, tools=tools) for ids, prefix in zip(outputs, prefixes)]


def _training_template(tokenizer) -> str | None:
    """The template TRL renders tool conversations with in training (SFT with assistant-only loss, GRPO):
    the tokenizer's own when it is prefix-preserving, else TRL's training variant of it (Qwen3's)."""
    from trl.chat_template_utils import get_training_chat_template, is_chat_template_prefix_preserving

    return None if is_chat_template_prefix_preserving(tokenizer) else get_training_chat_template(tokenizer)


def _call(tools: list[Callable], call: dict) -> tuple[str, str]:
    """Run one tool call; a failure is answered as TRL answers it in training ({'error': ...})."""
    function = call.get("function", call)
    name, arguments = function.get("name"), function.get("arguments") or {}
    tool = next((t for t in tools if t.__name__ == name), None)
    try:
        if tool is None:
            raise ValueError(f"unknown tool {name!r}")
        return name, str(tool(**arguments))
    except Exception as exc:  # noqa: BLE001  (whatever the tool raises is the model's problem, not ours)
        return name, str({"error": str(exc)})
