"""Reads one run's store and worker log, folding new rows into a RunState and chart series (runs in a thread)."""
from __future__ import annotations

from collections import deque
from pathlib import Path

from core.events import RUN_TERMINAL, STAGE_ACTIVE, StageStatus
from core.run_state import RunState
from core.runs import RunPaths
from core.store import RunStore
from tui.state import ChartSeries, RunSnapshot, snapshot

CHUNK = 50_000          # events read per query, so attaching to a huge run stays responsive
LOG_LINES = 1000        # lines of a worker log kept for the screen
LOG_FIRST_BYTES = 256 * 1024


class LogTail:
    """The last lines of a growing text file, read incrementally from a remembered offset."""

    def __init__(self, path: Path | None):
        self.path = path
        self.offset = 0
        self.lines: deque[str] = deque(maxlen=LOG_LINES)
        self.total = 0
        self._partial = ""

    def read(self) -> bool:
        """Read what was appended since last time; True if any whole line arrived."""
        if self.path is None:
            return False
        try:
            size = self.path.stat().st_size
            if size < self.offset:  # truncated or replaced: start again
                self.offset, self._partial = 0, ""
            if size == self.offset:
                return False
            with self.path.open("rb") as fh:
                start = self.offset if self.offset else max(0, size - LOG_FIRST_BYTES)
                fh.seek(start)
                data = fh.read(size - start)
        except OSError:
            return False
        self.offset = start + len(data)
        text = self._partial + data.decode("utf-8", errors="replace").replace("\r", "\n")
        *whole, self._partial = text.split("\n")
        self.lines.extend(whole)
        self.total += len(whole)
        return bool(whole)


class RunPoller:
    """One reader of one run: call poll() repeatedly; it returns a snapshot when something changed."""

    def __init__(self, paths: RunPaths):
        self.paths = paths
        self.store = RunStore(paths.db)
        self.state = RunState()
        self.charts = ChartSeries()
        self.follow: str | None = None  # stage whose log to tail; None follows the active stage
        self._log = LogTail(None)
        self._log_stage: str | None = None
        self._fingerprint: tuple = ()
        self.behind = False  # the last poll stopped at CHUNK rows: more are waiting
        self._version: int | None = None  # the store's data_version at the last full read
        self._decision: dict[str, str] = {}

    def poll(self, max_chunks: int = 1) -> RunSnapshot | None:
        """Fold what is new; the snapshot, or None when nothing visible changed. While the store is as it was
        (nothing committed since), only the log is read."""
        version = self.store.data_version()
        if version == self._version and not self.behind:
            following = self._log_stage
            changed = self._tail_log() or self._log_stage != following
            return self._snapshot(self._decision) if changed else None
        self._version = version
        meta = self.store.meta()
        stages = self.store.stages()
        self.state.set_meta(meta)
        self.state.set_stages(stages)
        for _ in range(max_chunks):
            events = self.store.events(after_id=self.state.last_event_id, limit=CHUNK)
            self.state.fold(events)
            self.charts.fold(events, self.state)
            self.behind = len(events) >= CHUNK
            if not self.behind:
                break
        log_grew = self._tail_log()
        decision = self._decision = self._decision_sent()
        fingerprint = (self.state.last_event_id, meta.get("status"), meta.get("heartbeat"),
                       tuple((s["status"], s["attempt"]) for s in stages), self._log_stage, decision)
        if fingerprint == self._fingerprint and not log_grew:
            return None
        self._fingerprint = fingerprint
        return self._snapshot(decision)

    @property
    def finished(self) -> bool:
        """The run has ended (completed, failed, rejected, ...): poll it slowly."""
        return self.state.meta.get("status") in RUN_TERMINAL

    def _snapshot(self, decision: dict[str, str]) -> RunSnapshot:
        return snapshot(self.state.view(self.paths.id, decision), self.charts.views(), self._log_stage,
                        tuple(self._log.lines), self._log.total)

    def _tail_log(self) -> bool:
        stage = self.follow or self._active_stage()
        if stage != self._log_stage:
            self._log_stage = stage
            self._log = LogTail(self.paths.stage_log(stage) if stage else None)
        return self._log.read()

    def _active_stage(self) -> str | None:
        """The running stage, else the last one that wrote a log, else the last one that started."""
        rows = self.state.stage_rows
        active = [r["name"] for r in rows if r.get("status") in STAGE_ACTIVE]
        logged = [r["name"] for r in rows if self.paths.stage_log(r["name"]).exists()]
        started = [r["name"] for r in rows if r.get("started_at") or r.get("status") not in (None, StageStatus.WAITING)]
        return (active or logged or started or [None])[-1]

    def _decision_sent(self) -> dict[str, str]:
        gate = self.state.open_gate()
        if gate is None:
            return {}
        stage, since = gate
        row = self.store.decision(stage)
        return {stage: row["decision"]} if row and row["ts"] >= since else {}

    def close(self) -> None:
        self.store.close()
