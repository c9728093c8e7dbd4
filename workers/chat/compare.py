"""Compare targets on one prompt set: every target's greedy output per prompt, and metrics per target.

The numbers come from workers.heldout (same item building, same batched greedy generation, same
perplexity) and workers.rewards (same answer extraction), so on a stage's eval set a target's
accuracy is the number its eval recorded.
"""
from __future__ import annotations

import threading
from typing import Callable

from core.config import EvalSpec
from core.kinds import EVAL_ROWS
from workers.chat.model_pool import ModelPool, using
from workers.data import load_rows
from workers.generation import generate
from workers.heldout import make_items, perplexity, resolve_format
from workers.rewards import exact_match, get_rewards

COMPARED_REWARDS = ("exact_match", "format")  # the registry rewards that score a plain answer


class CompareStopped(Exception):
    """The client stopped the comparison."""


def prompt_rows(request: dict) -> tuple[list[dict], EvalSpec]:
    """The rows to run (from the request, or the eval spec's data) and the eval settings to run them with."""
    spec = EvalSpec.model_validate(request["eval"])
    rows = request.get("rows") or load_rows(spec.data, EVAL_ROWS, cap=spec.max_samples)
    return rows[:spec.max_samples], spec


def compare(pool: ModelPool, request: dict, stop: threading.Event, progress: Callable[..., None]) -> dict:
    """Outputs and metrics of each target on the same rows; bases shared through the pool."""
    rows, spec = prompt_rows(request)
    results = []
    for n, target in enumerate(request["targets"]):
        if stop.is_set():
            raise CompareStopped("compare stopped")
        progress(target=target["label"], done=n, total=len(request["targets"]))
        active = pool.activate(target)
        with using(active) as model:
            results.append(score(model, active.tokenizer, rows, spec, target.get("kind")))
    return {"rows": [display_row(r) for r in rows], "targets": [t["label"] for t in request["targets"]],
            "results": results, "bases_loaded": pool.bases_loaded}


def score(model, tokenizer, rows: list[dict], spec: EvalSpec, kind: str | None) -> dict:
    """One target: outputs per row, accuracy / reward on answered rows, perplexity, mean output length (chars)."""
    fmt = resolve_format(spec.format, kind, tokenizer)
    items = make_items([{**r, "answer": r.get("answer", "")} for r in rows], fmt, tokenizer)
    was_training = model.training
    model.eval()
    try:
        outputs, routes = batched_outputs(model, tokenizer, [i.prompt for i in items], spec)
        ppl = perplexity(model, tokenizer, items, spec.batch_size) if "perplexity" in spec.metrics else None
    finally:
        model.train(was_training)
    graded = [i.prompt + o if fmt == "text" else o for i, o in zip(items, outputs)]
    answered = [k for k, r in enumerate(rows) if str(r.get("answer", "")).strip()]
    graded_answered, answers = [graded[k] for k in answered], [rows[k]["answer"] for k in answered]
    return {"outputs": outputs, "routes": routes,
            "right": right_answers(graded_answered, answers, answered, len(rows)),
            "format": fmt, "perplexity": ppl, "answered": len(answered),
            **answer_metrics(graded_answered, answers), "mean_length": _mean([len(o) for o in outputs])}


def right_answers(graded: list[str], answers: list, answered: list[int], rows: int) -> list[bool | None]:
    """Per row: whether the output's final number is the answer (None where the row has no answer)."""
    right: list[bool | None] = [None] * rows
    for k, hit in zip(answered, exact_match(None, graded, answer=answers)):
        right[k] = hit >= 1.0
    return right


def batched_outputs(model, tokenizer, prompts: list[str], spec: EvalSpec) -> tuple[list[str], list[str] | None]:
    """Greedy outputs in the eval's own batches (batch composition changes padding, hence the numbers), and
    for a route stage the expert that answered each prompt (None for other models)."""
    size = spec.batch_size
    outputs, routes = [], []
    for start in range(0, len(prompts), size):
        outputs += generate(model, tokenizer, prompts[start:start + size], spec.max_new_tokens)
        routes += getattr(model, "last_routes", [])
    return outputs, routes or None


def answer_metrics(graded: list[str], answers: list) -> dict:
    """Accuracy (exact match of the final number) and the mean of the rewards that read plain answers."""
    if not answers:
        return {"accuracy": None, "reward": None, "rewards": {}}
    names = list(COMPARED_REWARDS)
    per_fn = {name: fn(None, graded, answer=answers) for name, fn in zip(names, get_rewards(names))}
    totals = [sum(values) for values in zip(*per_fn.values())]
    return {"accuracy": _mean(exact_match(None, graded, answer=answers)), "reward": _mean(totals),
            "rewards": {name: _mean(values) for name, values in per_fn.items()}}


def display_row(row: dict) -> dict:
    """What a prompt looks like in the side-by-side table: its last user turn (or text) and answer."""
    prompt = row.get("messages") or row.get("prompt")
    if isinstance(prompt, list):
        prompt = [m["content"] for m in prompt if m["role"] == "user"][-1]
    return {"prompt": prompt, "answer": row.get("answer")}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
