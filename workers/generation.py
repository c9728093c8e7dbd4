"""Greedy, batched, left-padded generation for evaluation and comparison (the same batches give the same numbers)."""
from __future__ import annotations


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Greedy, batched, left-padded generation; the new text only, special tokens dropped."""
    return tokenizer.batch_decode(_generated(model, tokenizer, prompts, max_new_tokens).sequences,
                                  skip_special_tokens=True)


def generate_ids(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    """Like `generate`, as token ids up to and including the first end of turn (no padding)."""
    return _cut(tokenizer, _generated(model, tokenizer, prompts, max_new_tokens).sequences.tolist())


def generate_with_entropy(model, tokenizer, prompts: list[str], max_new_tokens: int):
    """Like `generate_ids`, with each answer's mean next-token entropy (nats) over the tokens it generated."""
    import torch

    out = _generated(model, tokenizer, prompts, max_new_tokens, output_logits=True)
    rows = _cut(tokenizer, out.sequences.tolist())
    logits = torch.stack(out.logits, dim=1).float()  # batch, steps, vocab
    per_step = -(logits.softmax(-1) * logits.log_softmax(-1)).sum(-1)
    entropies = [float(per_step[i, :len(row)].mean()) if row else 0.0 for i, row in enumerate(rows)]
    return rows, entropies


def _cut(tokenizer, rows: list[list[int]]) -> list[list[int]]:
    ends = {tokenizer.eos_token_id, tokenizer.pad_token_id}
    return [row[:next((i + 1 for i, t in enumerate(row) if t in ends), len(row))] for row in rows]


def _generated(model, tokenizer, prompts: list[str], max_new_tokens: int, **extra):
    """model.generate's output with only the new tokens in `sequences`."""
    import torch

    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    finally:
        tokenizer.padding_side = side
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, return_dict_in_generate=True, **extra)
    out.sequences = out.sequences[:, enc["input_ids"].shape[1]:]
    return out
