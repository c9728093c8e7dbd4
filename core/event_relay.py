"""Events over a job's log: a worker far from the run store prints them, the supervisor files them.

A stage on SkyPilot runs on machines that cannot reach the run's SQLite store, but its output comes back
(`sky jobs logs`). There the worker's store is a `LineStore`: every event is one line of its standard output,
`@cockpit-event [ts, stage, kind, step, name, value, data]`. The supervisor reads the job's log through
`relay`: event lines go into the run store with the worker's own timestamps, every other line to the
stage's log file, so the TUI's panels and log pane follow the job as they follow a local worker.
"""
from __future__ import annotations

import json
import sys
import time
from typing import IO, Any, Iterable

from core.events import EventKind
from core.store import metric_rows

PREFIX = "@cockpit-event "


class LineStore:
    """What a worker writes events to when its spec's db is "-" (the subset of RunStore that workers use)."""

    def __init__(self, out: IO[str] | None = None):
        self.out = out or sys.stdout

    def append(self, kind: EventKind, stage: str | None = None, step: int | None = None, name: str | None = None,
               value: float | None = None, now: bool = False, **data: Any) -> None:
        self._write([(time.time(), stage, kind, step, name, value, data or None)])

    def append_metrics(self, stage: str, step: int, metrics: dict[str, float]) -> None:
        self._write(metric_rows(stage, step, metrics))

    def _write(self, rows: list[tuple]) -> None:
        self.out.write("".join(PREFIX + json.dumps(row) + "\n" for row in rows))
        self.out.flush()

    def start_autoflush(self) -> None:
        """Every line is flushed as written."""

    def close(self) -> None:
        self.out.flush()


def relay(lines: Iterable[str], store, log: IO[str]) -> int:
    """File a worker's output: event lines into `store` (a RunStore), the rest into `log`; returns the events
    filed. A RESUMED event (SkyPilot restarted the job from a checkpoint) supersedes the metrics after its step,
    as the supervisor does for a local resume."""
    filed = 0
    for line in lines:
        start = line.find(PREFIX)  # SkyPilot may put a node prefix ("(head, rank=0, pid=12)") before the line
        row = _parse(line[start + len(PREFIX):]) if start >= 0 else None
        if row is None:
            log.write(line if line.endswith("\n") else line + "\n")
            continue
        ts, stage, kind, step, name, value, data = row
        if kind == EventKind.RESUMED and stage is not None:
            store.flush()
            store.supersede_after(stage, step or 0)
        store.append_rows([(ts, stage, kind, step, name, value, json.dumps(data) if data else None)])
        filed += 1
    log.flush()
    store.flush()
    return filed


def _parse(text: str) -> list | None:
    """The seven fields of an event line, or None where the line is not one (cut, or not JSON)."""
    try:
        row = json.loads(text)
    except ValueError:
        return None
    return row if isinstance(row, list) and len(row) == 7 and row[2] in EventKind._value2member_map_ else None
