"""Greedy, batched, left-padded generation for evaluation and comparison (the same batches give the same numbers)."""
from __future__ import annotations


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy, batched, left-padded generation; the new text only, special tokens dropped."""
    return tokenizer.batch_decode(_generated(model, tokenizer, prompts, max_new_tokens), skip_special_tokens=True)


def generate_ids(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    """Like `generate`, as token ids up to and including the first end of turn (no padding)."""
    ends = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    rows = []
    for row in _generated(model, tokenizer, prompts, max_new_tokens).tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in ends), len(row))
        rows.append(row[:cut])
    return rows


def _generated(model, tokenizer, prompts: list[str], max_new_tokens: int):
    import torch

    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    finally:
        tokenizer.padding_side = side
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id)
    return out[:, enc["input_ids"].shape[1]:]
