"""Context-length phases within one stage (seed 001: 512 -> 1024 -> 2048 tokens), one optimizer throughout.

The trainer tokenizes (and packs) for the longest phase; its collator is wrapped so that each example is cut to
the current phase's max_length before it is batched. The phase is told by counting the micro-batches collated
(the dataloader collates one batch ahead of the optimizer, so the trainer's own step would switch a step late);
a resumed trainer starts the count at its step. Each phase's first batch records a `phase_started` event.
"""
from __future__ import annotations

from core.events import EventKind

PER_TOKEN = ("input_ids", "attention_mask", "labels", "completion_mask", "assistant_masks", "position_ids")


class PhasedCollator:
    """The trainer's collator with every example cut to the current phase's max_length first."""

    def __init__(self, inner, bounds: list[tuple[int, int]], grad_accum: int, stage):
        self.inner, self.bounds, self.grad_accum, self.stage = inner, bounds, grad_accum, stage
        self.collated = 0
        self.phase = -1

    def __call__(self, examples: list[dict]):
        step = self.collated // self.grad_accum
        self.collated += 1
        phase = max(i for i, (first, _) in enumerate(self.bounds) if first <= step)
        if phase != self.phase:
            self.phase = phase
            self.stage.emit(EventKind.PHASE_STARTED, step=self.bounds[phase][0], phase=phase + 1,
                            phases=len(self.bounds), max_length=self.bounds[phase][1])
        return self.inner([cut(example, self.bounds[phase][1]) for example in examples])

    def resume_at(self, step: int) -> None:
        self.collated = step * self.grad_accum


def cut(example: dict, limit: int) -> dict:
    """The example's first `limit` tokens (per-token fields cut alike; a packed row's lengths clipped)."""
    if len(example["input_ids"]) <= limit:
        return example
    out = {k: (v[:limit] if k in PER_TOKEN else v) for k, v in example.items()}
    if "seq_lengths" in example:
        lengths, left = [], limit
        for n in example["seq_lengths"]:
            if left <= 0:
                break
            lengths.append(min(n, left))
            left -= n
        out["seq_lengths"] = lengths
    return out


def attach(trainer, stage) -> None:
    """Wrap the trainer's collator when the stage has context phases."""
    if not stage.train.phases:
        return
    from transformers import TrainerCallback

    collator = PhasedCollator(trainer.data_collator, stage.train.phase_bounds(), stage.train.grad_accum, stage)
    trainer.data_collator = collator

    class Resume(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            collator.resume_at(state.global_step)

    trainer.add_callback(Resume())
