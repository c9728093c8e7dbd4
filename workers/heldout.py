"""Held-out evaluation: eval/accuracy (greedy generation, exact match), eval/perplexity, and the behaviour metrics
of workers/behaviour_eval.py."""
from __future__ import annotations

import math
from dataclasses import dataclass

from core.config import EvalSpec
from core.kinds import CHAT_ROWS, KINDS
from workers.behaviour_eval import behaviour, win_rate
from workers.data import load_rows
from workers.generation import generate
from workers.rewards import answers_match
from workers.tool_eval import tool_accuracy


EXAMPLES_EACH = 3  # eval examples kept for the reviewer: this many wrong, then this many right


@dataclass
class Item:
    prompt: str
    completion: str | None  # reference continuation for perplexity; None = not scored
    answer: str
    question: str           # what a person reads as the prompt: the last user turn, or the text


def resolve_format(requested: str, kind: str | None, tokenizer) -> str:
    """auto = the kind's eval format (text after pretrain, chat otherwise); chat needs a chat template."""
    fmt = requested if requested != "auto" else (KINDS[kind].eval_format if kind in KINDS else "chat")
    if fmt == "chat" and not getattr(tokenizer, "chat_template", None):
        return "text"
    return fmt


def make_items(rows: list[dict], fmt: str, tokenizer) -> list[Item]:
    return [(_chat_item if fmt == "chat" else _text_item)(row, tokenizer) for row in rows]


def _chat_item(row: dict, tokenizer) -> Item:
    messages = row.get("messages") or row["prompt"]
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    reference = row["completion"] + tokenizer.eos_token if isinstance(row.get("completion"), str) else None
    if messages[-1]["role"] == "assistant":
        reference, messages = messages[-1]["content"] + tokenizer.eos_token, messages[:-1]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return Item(prompt, reference, str(row.get("answer", "")), _last_user({"messages": messages}))


def _text_item(row: dict, tokenizer) -> Item:
    prompt = row["prompt"] if isinstance(row.get("prompt"), str) else _last_user(row)
    text = row.get("text")
    reference = text[len(prompt):] if text and text.startswith(prompt) else row.get("completion")
    return Item(prompt, reference, str(row.get("answer", "")), prompt)


def _last_user(row: dict) -> str:
    messages = row.get("messages") or row["prompt"]
    return [m["content"] for m in messages if m["role"] == "user"][-1]


def accuracy(model, tokenizer, items: list[Item], batch_size: int, max_new_tokens: int, fmt: str):
    """Share of items whose generated final number equals the answer (`answers_match`), plus a few examples:
    the first wrong ones, then the first right ones (what a reviewer at the gate reads)."""
    correct, kept = 0, {False: [], True: []}
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        outputs = generate(model, tokenizer, [i.prompt for i in batch], max_new_tokens)
        for item, out in zip(batch, outputs):
            graded = item.prompt + out if fmt == "text" else out
            ok = answers_match(graded, item.answer)
            correct += ok
            if len(kept[ok]) < EXAMPLES_EACH:
                kept[ok].append({"prompt": item.question, "output": out, "answer": item.answer, "correct": ok})
    return correct / max(1, len(items)), kept[False] + kept[True]


def perplexity(model, tokenizer, items: list[Item], batch_size: int) -> float | None:
    """exp(mean NLL) of the reference continuations given their prompts; None if none has one."""
    import torch

    scored = [i for i in items if i.completion]
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(scored), batch_size):
        ids, labels = _perplexity_batch(tokenizer, scored[start:start + batch_size])
        with torch.no_grad():
            logits = model(input_ids=ids.to(model.device), attention_mask=(labels != -200).to(model.device)).logits
        nll, n = _summed_nll(logits.float(), labels.to(model.device))
        total_nll, total_tokens = total_nll + nll, total_tokens + n
    return math.exp(total_nll / total_tokens) if total_tokens else None


def _perplexity_batch(tokenizer, items: list[Item]):
    """Right-padded ids; labels -100 on prompt tokens, -200 on padding (masked from attention)."""
    import torch

    rows = []
    for item in items:
        p = tokenizer(item.prompt, add_special_tokens=False)["input_ids"]
        c = tokenizer(item.completion, add_special_tokens=False)["input_ids"]
        rows.append((p + c, [-100] * len(p) + c))
    width = max(len(r[0]) for r in rows)
    ids = torch.tensor([r[0] + [tokenizer.pad_token_id] * (width - len(r[0])) for r in rows])
    labels = torch.tensor([r[1] + [-200] * (width - len(r[1])) for r in rows])
    return ids, labels


def _summed_nll(logits, labels) -> tuple[float, int]:
    import torch.nn.functional as F

    targets = labels[:, 1:].clone()
    targets[targets < 0] = -100
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=-100, reduction="sum")
    return float(nll), int((targets != -100).sum())


NO_REFERENCE = "eval/perplexity: no row carries a reference to score (completion, text, or a last assistant turn)"


def evaluate(model, tokenizer, spec: EvalSpec, kind: str, starting=None, warn=print) -> dict:
    """Run the stage's EvalSpec; returns {"eval/<metric>": (value, data)}. `starting()`: a context manager giving
    the model the stage started from (for win_rate); `warn`: where a metric that cannot be measured is said."""
    rows = load_rows(spec.data, spec.row_fields(), cap=spec.max_samples)
    fmt = resolve_format(spec.format, kind, tokenizer)
    items = make_items(rows, fmt, tokenizer)
    was_training, config = model.training, getattr(model, "config", None)  # a routed model has none
    router_logits = getattr(config, "output_router_logits", None)
    if router_logits:  # TRL turns it on for a MoE's aux loss; transformers' loss then fails inside generate()
        config.output_router_logits = False
    model.eval()
    results = {}
    try:
        if "accuracy" in spec.metrics and spec.tools:
            results.update(tool_accuracy(model, tokenizer, rows, spec))
        elif "accuracy" in spec.metrics:
            acc, examples = accuracy(model, tokenizer, items, spec.batch_size, spec.max_new_tokens, fmt)
            results["eval/accuracy"] = (acc, {"samples": len(items), "format": fmt, "examples": examples})
        if "perplexity" in spec.metrics:
            ppl = perplexity(model, tokenizer, items, spec.batch_size)
            if ppl is not None:
                results["eval/perplexity"] = (ppl, {"samples": len(items), "format": fmt})
            else:
                warn(NO_REFERENCE)
        spoken = make_items(load_rows(spec.prompts, CHAT_ROWS, cap=spec.max_samples), fmt, tokenizer) \
            if spec.prompts else items
        results.update(behaviour(model, tokenizer, spec, [i.prompt for i in spoken], fmt))
        results.update(win_rate(model, starting, tokenizer, spec, rows, [i.prompt for i in items], fmt))
    finally:
        model.train(was_training)
        if router_logits:
            config.output_router_logits = router_logits
    return results
