"""On-policy data: sample the starting policy on a stage's prompts and score every sample.

DPO builds pairs from the policy's own best and worst answer to a prompt (its likely mistakes, where
preference learning has the most to say); GRPO keeps the prompts the policy sometimes solves (only
there does a group hold both right and wrong answers, so group-relative advantages are non-zero).
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from core.config import OnPolicySpec
from core.errors import SpecError
from workers.rewards import get_rewards


@dataclass(frozen=True)
class Scored:
    """One prompt's row, the policy's samples for it, and each sample's summed reward."""

    row: dict
    completions: list[str]
    rewards: list[float]

    @property
    def mixed(self) -> bool:
        return max(self.rewards) > min(self.rewards)


def mine(stage, model, tokenizer, rows: list[dict]) -> list[Scored]:
    """Sample `on_policy.samples` completions per row and score them; logs what it found."""
    spec, started = stage.config.on_policy, time.monotonic()
    prompts = [prompt_text(tokenizer, r["prompt"]) for r in rows]
    completions = sample(model, tokenizer, prompts, spec, seed=stage.train.seed)
    scored = score(rows, completions, get_rewards(stage.config.rewards, stage.spec.sandbox))
    _report(stage, scored, time.monotonic() - started)
    return scored


def prompt_text(tokenizer, prompt) -> str:
    """A row's prompt as the model sees it: a chat prompt through the template, plain text as is."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)


def sample(model, tokenizer, prompts: list[str], spec: OnPolicySpec, seed: int) -> list[list[str]]:
    """`spec.samples` sampled completions per prompt (batched, left-padded, seeded)."""
    import torch

    torch.manual_seed(seed)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    was_training, out = model.training, []
    model.eval()
    try:
        for start in range(0, len(prompts), spec.batch_size):
            out += _sample_batch(model, tokenizer, prompts[start:start + spec.batch_size], spec)
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def _sample_batch(model, tokenizer, prompts: list[str], spec: OnPolicySpec) -> list[list[str]]:
    import torch

    enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    with torch.no_grad():
        ids = model.generate(**enc, do_sample=True, temperature=spec.temperature, top_k=0, top_p=1.0,
                             max_new_tokens=spec.max_new_tokens, num_return_sequences=spec.samples,
                             pad_token_id=tokenizer.pad_token_id)
    texts = tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    n = spec.samples
    return [texts[i * n:(i + 1) * n] for i in range(len(prompts))]


def score(rows: list[dict], completions: list[list[str]], reward_funcs: list) -> list[Scored]:
    """Each sample's reward, summed over the reward functions (TRL's signature, row columns as kwargs)."""
    scored = []
    for row, texts in zip(rows, completions):
        columns = {k: [v] * len(texts) for k, v in row.items() if k != "prompt"}
        prompts = [row["prompt"]] * len(texts)
        totals = [sum(parts) for parts in zip(*(f(prompts, texts, **columns) for f in reward_funcs))]
        scored.append(Scored(row, texts, totals))
    return scored


def preference_pairs(scored: list[Scored]) -> list[dict]:
    """DPO rows: the most frequent best-scored sample as chosen, the most frequent worst as rejected."""
    pairs = []
    for s in scored:
        if not s.mixed:
            continue
        best = _most_common(s, max(s.rewards))
        worst = _most_common(s, min(s.rewards))
        pairs.append({"prompt": s.row["prompt"], "chosen": _as_turn(s.row["prompt"], best),
                      "rejected": _as_turn(s.row["prompt"], worst)})
    return pairs


def sometimes_solved(scored: list[Scored]) -> list[dict]:
    """GRPO rows: the prompts whose samples did not all score the same."""
    return [s.row for s in scored if s.mixed]


def _most_common(s: Scored, reward: float) -> str:
    return Counter(c for c, r in zip(s.completions, s.rewards) if r == reward).most_common(1)[0][0]


def _as_turn(prompt, text: str):
    """A completion in the prompt's format: an assistant turn for chat prompts, plain text otherwise."""
    return text if isinstance(prompt, str) else [{"role": "assistant", "content": text}]


def _report(stage, scored: list[Scored], seconds: float) -> None:
    samples = sum(len(s.rewards) for s in scored)
    mean = sum(sum(s.rewards) for s in scored) / max(1, samples)
    mixed = sum(s.mixed for s in scored)
    stage.log(f"on-policy: {len(scored)} prompts x {samples // max(1, len(scored))} samples in {seconds:.1f}s; "
              f"mean reward {mean:.3f}; {mixed} prompts with mixed outcomes")
    stage.emit_metrics(0, {"on_policy/mean_reward": mean, "on_policy/mixed_prompts": mixed,
                           "on_policy/prompts": len(scored)})


def mined_dataset(stage, loaded, select):
    """A Dataset of `select(mine(...))` rows for the trainer; a clear error when nothing is left."""
    from datasets import Dataset

    from workers.data import load_rows

    rows = load_rows(stage.config.data, stage.config.row_fields(), cap=stage.config.on_policy.prompts)
    kept = select(mine(stage, loaded.model, loaded.tokenizer, rows))
    if not kept:
        raise SpecError(f"on_policy: every sample of all {len(rows)} prompts scored the same, so there is "
                        "nothing to learn from; raise on_policy.temperature or on_policy.prompts")
    stage.log(f"on-policy: training on {len(kept)} mined rows")
    return Dataset.from_list(kept)
