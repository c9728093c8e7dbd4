"""What a model says to a prompt set, answered greedily: collapse (distinct-n, length, token entropy), refusals,
and wins against the model a stage started from (judged by a reward)."""
from __future__ import annotations

import re

from core.config import EvalSpec
from core.registry import REWARDS
from workers.functions import load_function
from workers.generation import generate, generate_with_entropy

BEHAVIOUR_METRICS = ("distinct_n", "length", "entropy", "refusal_rate")


def distinct_n(answers: list[list], n: int) -> float:
    """Distinct n-grams over all n-grams of `answers` (each a sequence of tokens; 1.0: nothing repeats; near 0:
    one answer over and over); 0.0 when no answer has n tokens."""
    grams = [tuple(a[i:i + n]) for a in answers for i in range(len(a) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def refusal_rate(texts: list[str], patterns: list[str]) -> float:
    """Share of `texts` matching any of `patterns` (case-insensitive)."""
    found = [re.compile(p, re.IGNORECASE) for p in patterns]
    return sum(any(p.search(t) for p in found) for t in texts) / max(1, len(texts))


def behaviour(model, tokenizer, spec: EvalSpec, prompts: list[str], fmt: str) -> dict:
    """The behaviour metrics `spec` asks for, as {"eval/<metric>": (value, data)}."""
    asked = [m for m in BEHAVIOUR_METRICS if m in spec.metrics]
    if not asked or not prompts:
        return {}
    answers, entropies = [], []
    for start in range(0, len(prompts), spec.batch_size):
        ids, ent = generate_with_entropy(model, tokenizer, prompts[start:start + spec.batch_size], spec.max_new_tokens)
        answers += ids
        entropies += ent
    texts = tokenizer.batch_decode(answers, skip_special_tokens=True)
    values = {"distinct_n": lambda: distinct_n(answers, spec.distinct_n),
              "length": lambda: sum(map(len, answers)) / len(answers),
              "entropy": lambda: sum(entropies) / len(entropies),
              "refusal_rate": lambda: refusal_rate(texts, spec.refusal_patterns)}
    data = {"samples": len(texts), "format": fmt, "examples": [{"prompt": p, "output": t} for p, t in
                                                               zip(prompts[:3], texts[:3])]}
    return {f"eval/{m}": (values[m](), data | ({"n": spec.distinct_n} if m == "distinct_n" else {})) for m in asked}



def wins(mine: list, theirs: list) -> float:
    """Share of pairs where `mine` scores higher (ties count half; a judge's None counts as 0)."""
    pairs = [(a or 0.0, b or 0.0) for a, b in zip(mine, theirs)]
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / max(1, len(pairs))


def win_rate(model, starting, tokenizer, spec: EvalSpec, rows: list[dict], prompts: list[str], fmt: str) -> dict:
    """eval/win_rate of `model` against the model `starting()` (a context manager) yields, on the eval data."""
    if "win_rate" not in spec.metrics or starting is None or not rows:
        return {}
    judge = load_function(spec.judge, REWARDS, "reward")
    columns = {k: [r.get(k) for r in rows] for k in rows[0] if k not in ("prompt", "messages")}

    def scores(generator) -> tuple[list, list[str]]:
        said = []
        for start in range(0, len(prompts), spec.batch_size):
            said += generate(generator, tokenizer, prompts[start:start + spec.batch_size], spec.max_new_tokens)
        graded = [p + a for p, a in zip(prompts, said)] if fmt == "text" else said
        return judge(prompts=prompts, completions=graded, **columns), said

    mine, said = scores(model)
    with starting() as before:
        theirs, before_said = scores(before)
    examples = [{"prompt": p, "output": a, "before": b} for p, a, b in zip(prompts[:3], said, before_said)]
    return {"eval/win_rate": (wins(mine, theirs), {"samples": len(prompts), "format": fmt, "judge": spec.judge,
                                                   "examples": examples})}
