"""Headless front-end: runs the supervisor in the foreground and prints what a human should see."""
from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from core.events import HEADLINE_METRICS, EventKind, RunStatus, describe
from core.runs import RunPaths
from core.store import Event, RunStore
from core.supervisor import Supervisor

EXIT_CODES = {RunStatus.COMPLETED: 0, RunStatus.FAILED: 1, RunStatus.GATE_FAILED: 3, RunStatus.REJECTED: 3,
              RunStatus.STOPPED: 130}
MARKS = {EventKind.STAGE_STARTED: ">", EventKind.GATE_PENDING: "?", EventKind.GATE_DECIDED: "="}
SEVERITY_MARKS = {"info": " ", "good": "+", "warn": "!", "error": "x"}  # the first column of a line


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
            if group and (ev.kind != EventKind.METRIC or (ev.stage, ev.step) != (group[0].stage, group[0].step)):
                self._emit(self._metrics_line(group), group[0].ts)
                group = []
            if ev.kind == EventKind.METRIC:
                group.append(ev)
            else:
                self._emit(self._line(ev), ev.ts)
        if group:
            self._emit(self._metrics_line(group), group[0].ts)

    def _emit(self, line: str | None, ts: float) -> None:
        if line:
            print(f"[{self._clock(ts)}] {line}", file=self.out, flush=True)

    def _clock(self, ts: float) -> str:
        secs = max(0, int(ts - self._t0))
        return f"{secs // 60:02d}:{secs % 60:02d}"

    def _line(self, ev: Event) -> str | None:
        """The line for one event (core/events.py says what happened), or None for events not worth a line."""
        if ev.kind == EventKind.STAGE_STARTED:
            self._track(ev.stage, ev.data.get("total_steps") or 0)
        text, severity = describe(ev)
        if not text or ev.kind == EventKind.RUN_FINISHED:  # run_batch prints the run's end itself
            return None
        if ev.kind == EventKind.GATE_PENDING:
            text += f": {_rules(ev.data.get('rules', []))}"
        return f"{MARKS.get(ev.kind, SEVERITY_MARKS[severity])} {ev.stage or 'run'}: {text}"

    def _track(self, stage: str, total: int) -> None:
        """A started stage: print its metrics about ten times."""
        self._totals[stage] = total
        self._next_print[stage] = max(1, total // 10)

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


def _rules(rules: list[dict]) -> str:
    """Each gate rule as measured: 'eval/accuracy 0.92 >= 0.9 ok'."""
    checks = [f"{r['metric']} {_fmt(r['value'])} {r['rule']} {'ok' if r['passed'] else 'FAIL'}" for r in rules]
    return "; ".join(checks) or "no rules"


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and (abs(value) < 1e-3 or abs(value) >= 1e4) and value != 0:
        return f"{value:.2e}"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
