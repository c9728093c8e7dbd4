"""Headless front-end: runs the supervisor in the foreground and prints what a human should see."""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from core.runs import RunPaths
from core.store import Event, RunStore
from core.supervisor import Supervisor

EXIT_CODES = {"completed": 0, "failed": 1, "gate_failed": 3, "rejected": 3, "stopped": 130}
HEADLINE_METRICS = ("loss", "learning_rate", "grad_norm", "reward", "kl", "rewards/margins", "mean_token_accuracy")


def run_batch(paths: RunPaths, gate_policy: str = "rules", out: TextIO = sys.stdout) -> int:
    """Run the whole curriculum here; returns the exit code (0 ok, 1 failed, 3 gate, 130 stopped)."""
    printer = EventPrinter(paths, out)
    printer.start()
    try:
        status = Supervisor(paths, gate_policy).run()
    finally:
        printer.stop()
    print(f"run {paths.id}: {status}  (cockpit show {paths.id})", file=out, flush=True)
    return EXIT_CODES.get(status, 1)


class EventPrinter:
    """Tails the run store in a thread and prints one line per event worth a human's eye."""

    def __init__(self, paths: RunPaths, out: TextIO, poll_s: float = 0.3):
        self.paths, self.out, self.poll_s = paths, out, poll_s
        self._t0 = time.time()
        self._store = RunStore(paths.db)
        self._after = self._store.last_event_id()  # a resumed run does not replay its history
        self._next_print: dict[str, int] = {}
        self._totals: dict[str, int] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="batch-printer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)
        self._drain()
        self._store.close()

    def _loop(self) -> None:
        while not self._done.wait(self.poll_s):
            self._drain()

    def _drain(self) -> None:
        events = self._store.events(after_id=self._after)
        group: list[Event] = []
        for ev in events:
            self._after = ev.id
            if group and (ev.kind != "metric" or (ev.stage, ev.step) != (group[0].stage, group[0].step)):
                self._emit(self._metrics_line(group), group[0].ts)
                group = []
            if ev.kind == "metric":
                group.append(ev)
            else:
                self._emit(self.describe(ev), ev.ts)
        if group:
            self._emit(self._metrics_line(group), group[0].ts)

    def _emit(self, line: str | None, ts: float) -> None:
        if line:
            print(f"[{self._clock(ts)}] {line}", file=self.out, flush=True)

    def _clock(self, ts: float) -> str:
        secs = max(0, int(ts - self._t0))
        return f"{secs // 60:02d}:{secs % 60:02d}"

    def describe(self, ev: Event) -> str | None:
        """The line for one event, or None for events not worth a line."""
        handler = getattr(self, f"_on_{ev.kind}", None)
        return handler(ev) if handler else None

    def _on_stage_started(self, ev: Event) -> str:
        total = ev.data.get("total_steps")
        self._totals[ev.stage] = total or 0
        self._next_print[ev.stage] = max(1, (total or 0) // 10)
        steps = f", {total} steps" if total else ""
        return f"> {ev.stage}: started (attempt {ev.data.get('attempt')}{steps}, {ev.data.get('device', 'cpu')})"

    def _metrics_line(self, group: list[Event]) -> str | None:
        """One line for one logged step, at most about ten per stage."""
        stage, step = group[0].stage, group[0].step
        if step is None or step < self._next_print.get(stage, 1):
            return None
        values = {ev.name: ev.value for ev in group if ev.name in HEADLINE_METRICS}
        if not values:
            return None
        self._next_print[stage] = step + max(1, self._totals.get(stage, 0) // 10)
        shown = "  ".join(f"{k} {_fmt(v)}" for k, v in values.items())
        return f"  {stage} step {step}/{self._totals.get(stage) or '?'}  {shown}"

    def _on_eval_result(self, ev: Event) -> str:
        return f"  {ev.stage} {ev.name} = {_fmt(ev.value)}"

    def _on_checkpoint_saved(self, ev: Event) -> str:
        return f"  {ev.stage} checkpoint at step {ev.step}"

    def _on_gate_pending(self, ev: Event) -> str:
        rules = "; ".join(f"{r['metric']} {_fmt(r['value'])} {r['rule']} {'ok' if r['passed'] else 'FAIL'}"
                          for r in ev.data.get("rules", []))
        return f"? {ev.stage}: gate ({ev.data.get('approval')}) {rules or 'no rules'}"

    def _on_gate_decided(self, ev: Event) -> str:
        return f"= {ev.stage}: gate {ev.data.get('decision')} by {ev.data.get('by')}"

    def _on_stage_finished(self, ev: Event) -> str:
        reason = f": {ev.data['reason']}" if ev.data.get("reason") else ""
        return f"{'+' if ev.data.get('status') in ('completed', 'passed') else 'x'} {ev.stage}: {ev.data.get('status')}{reason}"

    def _on_oom_retry(self, ev: Event) -> str:
        return (f"! {ev.stage}: out of memory, retrying with batch {ev.data.get('batch_size')} x "
                f"{ev.data.get('grad_accum')} accumulation")

    def _on_resumed(self, ev: Event) -> str:
        src = ev.data.get("from_checkpoint")
        return f"! {ev.stage}: resuming from step {ev.step}" + ("" if src else " (no complete checkpoint: restart)")

    def _on_stalled(self, ev: Event) -> str:
        return f"! {ev.stage}: stalled, no new step for {ev.data.get('seconds')} s"

    def _on_log(self, ev: Event) -> str | None:
        if ev.data.get("level") in ("warning", "error"):
            return f"! {ev.stage or 'run'}: {ev.data.get('message')}"
        return None


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and (abs(value) < 1e-3 or abs(value) >= 1e4) and value != 0:
        return f"{value:.2e}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
