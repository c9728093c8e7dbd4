"""A run store filled with recorded-looking events, for tests, benchmarks and trying the cockpit.

`build_recorded_run(dir, phase="gate")` leaves the demo curriculum waiting at sft's manual gate;
`phase="finished"` plays it to the end. Timestamps come from a fixed clock, so screens are
reproducible.
"""
from __future__ import annotations

import math
import random
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from core.config_load import load_curriculum
from core.runs import RunPaths
from core.store import RunStore

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"
T0 = 1_700_000_000.0
RUN_ID = "20231114-221320-demo"
GIB = 1024 ** 3
ROLLOUT_STEPS = (2, 10, 20)  # grpo's steps with stored rollouts (finished phase)


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> float:
        self.t += seconds
        return self.t


@contextmanager
def frozen_store_time(clock: FakeClock):
    with mock.patch("core.store.time.time", clock):
        yield


def demo_store(directory: Path, run_id: str) -> tuple[RunPaths, RunStore, "FakeClock"]:
    """`<directory>/<run_id>` with a fresh store of the demo curriculum (created, nothing run) and its clock."""
    cur = load_curriculum(DEMO)
    paths = RunPaths(Path(directory) / run_id)
    paths.root.mkdir(parents=True)
    stages = [{"name": s.name, "kind": s.kind, "from": s.from_,
               "total_steps": s.train.steps if s.kind in ("pretrain", "sft", "dpo", "grpo") else None}
              for s in cur.stages]
    meta = {"id": run_id, "name": cur.name, "source": str(DEMO), "created_at": T0, "status": "running",
            "supervisor_pid": 0, "heartbeat": T0, "config": cur.model_dump(mode="json", by_alias=True)}
    return paths, RunStore.create(paths.db, meta, stages), FakeClock()


def build_recorded_run(directory: Path, phase: str = "gate", run_id: str = RUN_ID) -> RunPaths:
    """Create `<directory>/<run_id>` holding the demo curriculum played up to `phase`."""
    paths, store, clock = demo_store(directory, run_id)
    with frozen_store_time(clock):
        _play(store, paths, clock, phase)
        store.set_meta(heartbeat=clock.t)
    store.close()
    return paths


def _play(store: RunStore, paths: RunPaths, clock: FakeClock, phase: str) -> None:
    rng = random.Random(7)
    _train_stage(store, paths, clock, rng, "pretrain", 800, lr=3e-3, loss=(5.6, 0.9), evals={"eval/perplexity": 2.71,
                                                                                      "eval/accuracy": 0.004})
    _auto_gate(store, clock, "pretrain", "eval/perplexity", "<= 4.0", 2.71, 4.0, None,
               {"eval/perplexity": {"pretrain": 2.71}})
    _train_stage(store, paths, clock, rng, "sft", 600, lr=3e-3, loss=(2.4, 0.35), resume_at=(350, 300),
                 evals={"eval/accuracy": 0.92, "eval/perplexity": 1.9})
    rules = [{"metric": "eval/accuracy", "rule": ">= 0.5", "value": 0.92, "threshold": 0.5, "passed": True,
              "reference": None}]
    store.append("gate_pending", stage="sft", now=True, approval="manual", rules=rules, passed=True,
                 history={"eval/accuracy": {"pretrain": 0.004, "sft": 0.92}})
    store.update_stage("sft", status="gate_pending")
    if phase == "gate":
        return
    _decide(store, clock, "sft", "approve", "tui:alice", "accuracy well above the bar", "passed")
    extra = {"dpo": ("rewards/margins", 0.05, 1.8), "grpo": ("reward", 0.55, 0.9)}
    for name, steps, prev in (("dpo", 30, "sft"), ("grpo", 20, "sft")):
        metric, lo, hi = extra[name]
        _train_stage(store, paths, clock, rng, name, steps, lr=1e-4, loss=(0.69, 0.3), extra=(metric, lo, hi),
                     evals={"eval/accuracy": 0.925 if name == "dpo" else 0.93}, logging=2)
        acc = 0.925 if name == "dpo" else 0.93
        _auto_gate(store, clock, name, "eval/accuracy", ">= sft - 0.02", acc, 0.90, "sft",
                   {"eval/accuracy": {"pretrain": 0.004, "sft": 0.92, name: acc}})
    _merge_stage(store, clock)
    store.append("run_finished", now=True, status="completed")
    store.set_meta(status="completed")


def _train_stage(store, paths, clock, rng, name, steps, lr, loss, evals, resume_at=None, extra=None, logging=10):
    store.update_stage(name, status="running", attempt=1, started_at=clock.t, total_steps=steps)
    store.append("stage_started", stage=name, attempt=1, total_steps=steps, pid=4242, world_size=1, backend="hf",
                 device="cpu")
    log = paths.stage_log(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    lines = [f"[{name}] building model and data", f"[{name}] {steps} steps, logging every {logging}"]
    step = logging
    while step <= steps:
        clock.advance(0.07 * logging)
        frac = step / steps
        metrics = {"loss": loss[1] + (loss[0] - loss[1]) * math.exp(-4 * frac) + rng.uniform(-0.05, 0.05),
                   "learning_rate": lr * (min(1.0, step / 30) * (0.5 + 0.5 * math.cos(math.pi * frac))),
                   "grad_norm": 0.4 + 1.5 * math.exp(-3 * frac) + rng.uniform(0, 0.2)}
        if extra:
            metrics[extra[0]] = extra[1] + (extra[2] - extra[1]) * frac + rng.uniform(-0.03, 0.03)
            if name == "grpo":
                metrics["kl"] = 0.002 * step + rng.uniform(0, 0.002)
        store.append_metrics(name, step, metrics)
        if name == "grpo" and step in ROLLOUT_STEPS:
            _rollouts(store, step)
        lines.append(f"{{'loss': {metrics['loss']:.4f}, 'grad_norm': {metrics['grad_norm']:.3f}, 'step': {step}}}")
        if step % 200 == 0 and step < steps:
            store.append("checkpoint_saved", stage=name, step=step, path=f"stages/{name}/checkpoints/checkpoint-{step}",
                         complete=True)
        if step % 100 == 0:
            store.append("hardware", stage=name, gpus=[], rss=int(1.4 * GIB), cpu=187.5, procs=3)
        if resume_at and step == resume_at[0]:
            _interrupt(store, clock, name, resume_at[1], lines)
            step = resume_at[1]
            resume_at = None
        step += logging
    store.flush()
    for metric, value in evals.items():
        examples = EXAMPLES if metric == "eval/accuracy" else []
        store.append("eval_result", stage=name, name=metric, value=value, samples=500,
                     format="text" if name == "pretrain" else "chat", examples=examples)
    store.append("checkpoint_saved", stage=name, step=steps, path=f"stages/{name}/final", complete=True)
    lines.append(f"[{name}] eval: " + ", ".join(f"{k}={v}" for k, v in evals.items()))
    log.write_text("\n".join(lines) + "\n")
    store.flush()


EXAMPLES = [{"prompt": p, "output": o, "answer": a, "correct": o.endswith("=" + a)}  # wrong ones first, as stored
            for p, o, a in (("7+9=", "7+7=15", "16"), ("57+12=", "57+12=79", "69"), ("23+45=", "23+45=68", "68"),
                            ("81+9=", "81+9=90", "90"), ("40+40=", "40+40=80", "80"))]


def _rollouts(store, step):
    """Four stored completions of grpo at `step` (no randomness: the other events stay as they were)."""
    a, b = 17 + step, 25 + 2 * step
    question = f"What is {a}+{b}?"
    right = str(a + b)
    call = {"name": "calculator", "arguments": {"expression": f"{a}+{b}"}}
    samples = [  # (turns, exact_match, tool_use)
        ([{"role": "assistant", "content": "", "tool_calls": [call]}, {"role": "tool", "content": right},
          {"role": "assistant", "content": f"{a}+{b}={right}"}], 1.0, 1.0),
        ([{"role": "assistant", "content": f"I add the tens first: {a // 10 * 10}+{b // 10 * 10} is "
           f"{a // 10 * 10 + b // 10 * 10}, then the ones: {a % 10}+{b % 10} is {a % 10 + b % 10}. Put together "
           f"that makes {a + b + (0 if step >= 10 else 1)}, which is the answer to the question."}],
         1.0 if step >= 10 else 0.0, 0.0),
        ([{"role": "assistant", "content": "", "tool_calls": [{"name": "calculator",
                                                                "arguments": {"expression": f"{a}*{b}"}}]},
          {"role": "tool", "content": str(a * b)}, {"role": "assistant", "content": str(a * b)}], 0.0, 1.0),
        ([{"role": "assistant", "content": "", "tool_calls": [{"name": "calculator",
                                                                "arguments": {"expr": f"{a}+{b}"}}]},
          {"role": "tool", "content": "error: calculator() got an unexpected keyword argument 'expr'"},
          {"role": "assistant", "content": ""}], 0.0, 0.0),
    ]
    for i, (turns, exact, tool) in enumerate(samples):
        store.append("rollout", stage="grpo", step=step, sample=i, prompt=question, turns=turns,
                     rewards={"exact_match": exact, "tool_use": tool}, total=exact + tool)


def _interrupt(store, clock, name, back_to, lines):
    store.append("log", stage=name, level="error", message="worker exited with code -9 (killed)")
    store.flush()
    store.supersede_after(name, back_to)
    clock.advance(5)
    store.append("resumed", stage=name, step=back_to, from_checkpoint=f"stages/{name}/checkpoints/checkpoint-{back_to}")
    store.update_stage(name, attempt=2)
    lines.append(f"[{name}] resumed from checkpoint-{back_to}")


def _auto_gate(store, clock, name, metric, rule, value, threshold, reference, history):
    rules = [{"metric": metric, "rule": rule, "value": value, "threshold": threshold, "passed": True,
              "reference": reference}]
    store.append("gate_pending", stage=name, approval="auto", rules=rules, passed=True, history=history)
    clock.advance(1)
    _decide(store, clock, name, "pass", "rules", None, "passed")  # as stores before approve/reject recorded it


def _decide(store, clock, name, decision, by, note, status):
    if decision in ("approve", "reject"):
        store.decide(name, decision, by=by, note=note)
    store.append("gate_decided", stage=name, decision=decision, by=by, note=note, metrics={})
    store.append("stage_finished", stage=name, status=status, reason=None, exit_code=0)
    store.update_stage(name, status=status, finished_at=clock.advance(1))
    store.flush()


def _merge_stage(store, clock):
    store.update_stage("final", status="running", attempt=1, started_at=clock.advance(1))
    store.append("stage_started", stage="final", attempt=1, total_steps=None, pid=4243, world_size=1, backend="hf",
                 device="cpu")
    store.append("checkpoint_saved", stage="final", step=0, path="stages/final/final", complete=True)
    store.append("stage_finished", stage="final", status="completed", reason=None, exit_code=0)
    store.update_stage("final", status="completed", finished_at=clock.advance(2))
    store.flush()


async def wait_until(pilot, condition, timeout_s: float = 10.0) -> None:
    """Let the app run until `condition()` holds (tests and benchmarks; no fixed sleeps)."""
    import asyncio
    import time as _time

    deadline = _time.monotonic() + timeout_s
    while not condition():
        if _time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout_s} s")
        await pilot.pause(0.01)
    await pilot.pause()
    await asyncio.sleep(0)
