"""The run store: one SQLite database (WAL) per run, the single source of truth.

Writers buffer events and commit in batches (every `flush_s` or `batch` rows); readers use their
own connections and never block writers. Open `run.db` with the sqlite3 shell to see everything.
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from core.events import Decision, EventKind

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS stages (
    idx INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, kind TEXT NOT NULL, from_stage TEXT,
    status TEXT NOT NULL DEFAULT 'waiting', attempt INTEGER NOT NULL DEFAULT 0,
    started_at REAL, finished_at REAL, reason TEXT, checkpoint TEXT, total_steps INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, stage TEXT, kind TEXT NOT NULL,
    step INTEGER, name TEXT, value REAL, data TEXT, superseded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_kind ON events (kind, id);
CREATE INDEX IF NOT EXISTS events_stage ON events (stage, kind, step);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, stage TEXT NOT NULL,
    decision TEXT NOT NULL, by TEXT NOT NULL, note TEXT
);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, command TEXT NOT NULL, by TEXT,
    done INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass
class Event:
    """One row of the event vocabulary (core/events.py: `kind` is an EventKind, `data` its payload)."""

    id: int
    ts: float
    stage: str | None
    kind: str
    step: int | None = None
    name: str | None = None
    value: float | None = None
    data: dict = field(default_factory=dict)


def connect(path: str | Path, timeout_s: float = 30.0) -> sqlite3.Connection:
    """A connection in WAL mode that waits on a busy database instead of failing."""
    conn = sqlite3.connect(str(path), timeout=timeout_s, check_same_thread=False, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    return conn


class RunStore:
    """Reads and writes one run's database. Thread-safe; writes are buffered."""

    def __init__(self, path: str | Path, flush_s: float = 0.2, batch: int = 500):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"no run database at {self.path}")
        self._conn = connect(self.path)
        self._lock = threading.RLock()
        self._pending: list[tuple] = []
        self._flush_s, self._batch = flush_s, batch
        self._last_flush = time.monotonic()
        self._flusher: threading.Thread | None = None
        self._closed = threading.Event()

    @classmethod
    def create(cls, path: str | Path, meta: dict[str, Any], stages: Iterable[dict]) -> "RunStore":
        """Create the database with its schema, meta and stage rows, then move it into place: a reader never
        opens a run.db without its tables."""
        path = Path(path)
        building = path.with_name(path.name + ".new")
        building.unlink(missing_ok=True)
        conn = connect(building)
        conn.execute("BEGIN")
        for stmt in SCHEMA.strip().split(";"):
            if stmt.strip():
                conn.execute(stmt)
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, _enc(v)) for k, v in meta.items()])
        conn.executemany(
            "INSERT INTO stages (idx, name, kind, from_stage, total_steps) VALUES (?, ?, ?, ?, ?)",
            [(i, s["name"], s["kind"], s.get("from"), s.get("total_steps")) for i, s in enumerate(stages)])
        conn.execute("COMMIT")
        conn.close()  # the last connection: the write-ahead log is folded in and removed
        os.replace(building, path)
        return cls(path)

    # -- meta ---------------------------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        rows = self._read("SELECT key, value FROM meta")
        return {k: _dec(v) for k, v in rows}

    def data_version(self) -> int:
        """A number that changes when another connection commits (SQLite's `PRAGMA data_version`): one cheap
        query tells a reader whether anything it would read is new."""
        return self._read("PRAGMA data_version")[0][0]

    def get_meta(self, key: str, default: Any = None) -> Any:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return _dec(rows[0][0]) if rows else default

    def set_meta(self, **values: Any) -> None:
        self._write_now("INSERT OR REPLACE INTO meta VALUES (?, ?)", [(k, _enc(v)) for k, v in values.items()])

    # -- stages -------------------------------------------------------------------------------
    def stages(self) -> list[dict]:
        cur = self._conn.execute("SELECT * FROM stages ORDER BY idx")
        cols = [c[0] for c in cur.description]
        return [dict(zip(cols, row)) for row in cur.fetchall()]

    def stage(self, name: str) -> dict:
        found = [s for s in self.stages() if s["name"] == name]
        if not found:
            raise KeyError(name)
        return found[0]

    def update_stage(self, name: str, **fields: Any) -> None:
        sets = ", ".join(f"{k} = ?" for k in fields)
        self._write_now(f"UPDATE stages SET {sets} WHERE name = ?", [(*fields.values(), name)])

    # -- events -------------------------------------------------------------------------------
    def append(self, kind: EventKind, stage: str | None = None, step: int | None = None, name: str | None = None,
               value: float | None = None, now: bool = False, **data: Any) -> None:
        """Queue one event; `now=True` commits it (and everything queued) before returning."""
        row = (time.time(), stage, kind, step, name, value, json.dumps(data) if data else None)
        with self._lock:
            self._pending.append(row)
            due = now or len(self._pending) >= self._batch or time.monotonic() - self._last_flush >= self._flush_s
        if due:
            self.flush()

    def append_metrics(self, stage: str, step: int, metrics: dict[str, float]) -> None:
        """Queue one `metric` event per numeric value, TRL key names unchanged."""
        self.append_rows(metric_rows(stage, step, metrics))

    def append_rows(self, rows: list[tuple]) -> None:
        """Queue whole rows (ts, stage, kind, step, name, value, data as JSON): metrics, relayed events."""
        with self._lock:
            self._pending.extend(rows)
            due = len(self._pending) >= self._batch or time.monotonic() - self._last_flush >= self._flush_s
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            rows, self._pending = self._pending, []
            self._last_flush = time.monotonic()
            if rows:
                self._write_now("INSERT INTO events (ts, stage, kind, step, name, value, data) "
                                "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def start_autoflush(self) -> None:
        """Flush queued events in the background so a quiet writer's events still arrive."""
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._autoflush, name="store-flush", daemon=True)
            self._flusher.start()

    def _autoflush(self) -> None:
        while not self._closed.wait(self._flush_s):
            try:
                self.flush()
            except sqlite3.Error:
                pass  # retried at the next tick; close() flushes for real

    def events(self, after_id: int = 0, kinds: Iterable[str] | None = None, stage: str | None = None,
               limit: int | None = None, include_superseded: bool = False) -> list[Event]:
        sql, args = "SELECT id, ts, stage, kind, step, name, value, data FROM events WHERE id > ?", [after_id]
        if kinds:
            kinds = list(kinds)
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            args += kinds
        if stage is not None:
            sql += " AND stage = ?"
            args.append(stage)
        if not include_superseded:
            sql += " AND superseded = 0"
        sql += " ORDER BY id" + (f" LIMIT {int(limit)}" if limit else "")
        return [Event(i, ts, st, k, sp, n, v, json.loads(d) if d else {})
                for i, ts, st, k, sp, n, v, d in self._read(sql, args)]

    def last_event_id(self) -> int:
        return self._read("SELECT COALESCE(MAX(id), 0) FROM events")[0][0]

    def final_metrics(self, stage: str) -> dict[str, float]:
        """The last value of every metric of a stage (training and eval), superseded rows ignored."""
        rows = self._read("SELECT name, value FROM events WHERE id IN (SELECT MAX(id) FROM events "
                          "WHERE stage = ? AND kind IN (?, ?) AND superseded = 0 GROUP BY name)",
                          (stage, EventKind.METRIC, EventKind.EVAL_RESULT))
        return {n: v for n, v in rows}

    def last_step(self, stage: str) -> int | None:
        rows = self._read("SELECT MAX(step) FROM events WHERE stage = ? AND kind = ? AND superseded = 0",
                          (stage, EventKind.METRIC))
        return rows[0][0]

    def supersede_after(self, stage: str, step: int) -> int:
        """Mark a stage's metrics past `step` as replaced (a resume re-runs those steps)."""
        return self._write_now("UPDATE events SET superseded = 1 WHERE stage = ? AND kind = ? AND step > ?",
                               [(stage, EventKind.METRIC, step)])

    # -- decisions and commands ---------------------------------------------------------------
    def decide(self, stage: str, decision: Decision, by: str, note: str | None = None) -> None:
        """Record an operator's gate decision (approve/reject); the supervisor picks it up."""
        self._write_now("INSERT INTO decisions (ts, stage, decision, by, note) VALUES (?, ?, ?, ?, ?)",
                        [(time.time(), stage, decision, by, note)])

    def decision(self, stage: str) -> dict | None:
        rows = self._read("SELECT decision, by, note, ts FROM decisions WHERE stage = ? ORDER BY id DESC LIMIT 1",
                          (stage,))
        return dict(zip(("decision", "by", "note", "ts"), rows[0])) if rows else None

    def command(self, command: str, by: str = "cli") -> None:
        self._write_now("INSERT INTO commands (ts, command, by) VALUES (?, ?, ?)", [(time.time(), command, by)])

    def take_commands(self) -> list[str]:
        rows = self._read("SELECT id, command FROM commands WHERE done = 0 ORDER BY id")
        if rows:
            self._write_now("UPDATE commands SET done = 1 WHERE id = ?", [(r[0],) for r in rows])
        return [r[1] for r in rows]

    # -- plumbing -----------------------------------------------------------------------------
    def _read(self, sql: str, args: Iterable = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, tuple(args)).fetchall()

    def _write_now(self, sql: str, rows: list[tuple]) -> int:
        with self._lock:
            for attempt in range(5):
                try:
                    self._conn.execute("BEGIN IMMEDIATE")
                    cur = self._conn.executemany(sql, rows)
                    self._conn.execute("COMMIT")
                    return cur.rowcount
                except sqlite3.OperationalError as exc:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    if "locked" not in str(exc) or attempt == 4:
                        raise
                    time.sleep(0.05 * (attempt + 1))
        return 0

    def close(self) -> None:
        self._closed.set()
        if self._flusher is not None:
            self._flusher.join(timeout=2)
        self.flush()
        with self._lock:
            self._conn.close()

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def metric_rows(stage: str, step: int, metrics: dict) -> list[tuple]:
    """One `metric` row per numeric value (bools and text left out)."""
    ts = time.time()
    return [(ts, stage, EventKind.METRIC, step, k, float(v), None) for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)]


def _enc(value: Any) -> str:
    return json.dumps(value)


def _dec(text: str | None) -> Any:
    return json.loads(text) if text is not None else None
