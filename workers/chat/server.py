"""The chat worker: `python -m workers.chat`, JSON lines on stdin (requests) and stdout (events).

The one worker that reads stdin: the UI or CLI holds no model, only this process does. Requests run
one at a time in a job thread, so the main thread keeps reading and a `stop` lands mid-generation.

Requests:  {"op": "load", "id": 1, "target": {Target as JSON}}
           {"op": "generate", "id": 2, "messages": [{"role", "content"}...], "settings": {...}}
           {"op": "compare", "id": 3, "targets": [...], "rows": [...] | "eval": {EvalSpec}, ...}
           {"op": "stop"}   {"op": "quit"}
Events:    {"event": "ready"} then, per request id: "loaded" | "token"* "done" | "progress"* "compared",
           ("loaded" names a route stage's experts; "done" the expert that answered),
           or "error" {"message", "user": true when the request itself was wrong}.
"""
from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time

from workers.common import QUIET_ENV

PROTOCOL_VERSION = 1


class RequestError(ValueError):
    """A request the worker cannot serve as asked (unknown op, nothing loaded)."""


class Channel:
    """The protocol's stdout, kept apart from fd 1 so stray library prints cannot corrupt it."""

    def __init__(self):
        self._out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        self._lock = threading.Lock()

    def send(self, event: str, rid: int | None = None, **fields) -> None:
        line = json.dumps({"event": event, "id": rid, **fields})
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()


class ChatServer:
    """Dispatches requests: jobs (load, generate, compare) to one job thread; stop and quit at once."""

    def __init__(self, channel: Channel):
        from workers.chat.model_pool import ModelPool

        self.channel = channel
        self.pool = ModelPool()
        self.active = None
        self.stop_flag = threading.Event()
        self.jobs: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run_jobs, name="chat-jobs", daemon=True)

    def serve(self, lines) -> None:
        self.thread.start()
        self.channel.send("ready", pid=os.getpid(), protocol=PROTOCOL_VERSION)
        for line in lines:
            request = self._parse(line)
            if request is None:
                continue
            if request.get("op") == "quit":
                break
            if request.get("op") == "stop":
                self.stop_flag.set()
            else:
                self.jobs.put(request)
        self.stop_flag.set()
        self.jobs.put(None)
        self.thread.join(timeout=5)

    def _parse(self, line: str) -> dict | None:
        try:
            request = json.loads(line)
            if isinstance(request, dict):
                return request
        except json.JSONDecodeError:
            pass
        if line.strip():
            self.channel.send("error", None, message=f"not a JSON request: {line.strip()[:80]}", user=True)
        return None

    def _run_jobs(self) -> None:
        while (request := self.jobs.get()) is not None:
            self.stop_flag.clear()
            rid = request.get("id")
            try:
                self._dispatch(request)
            except Exception as exc:  # noqa: BLE001  (every failure goes back to the client)
                user = _is_user(exc)
                self.channel.send("error", rid, message=str(exc) if user else f"{type(exc).__name__}: {exc}",
                                  user=user)

    def _dispatch(self, request: dict) -> None:
        op, rid = request.get("op"), request.get("id")
        if op == "load":
            self._load(rid, request["target"])
        elif op == "generate":
            self._generate(rid, request)
        elif op == "compare":
            from workers.chat.compare import compare

            result = compare(self.pool, request, self.stop_flag,
                             lambda **p: self.channel.send("progress", rid, **p))
            self.channel.send("compared", rid, result=result)
        else:
            raise RequestError(f"unknown op {op!r}")

    def _load(self, rid: int, target: dict) -> None:
        started = time.perf_counter()
        self.active = self.pool.activate(target)
        self.channel.send("loaded", rid, label=self.active.label, load_s=round(time.perf_counter() - started, 4),
                          reused_base=self.active.reused_base, adapter=self.active.adapter is not None,
                          format=self.active.format, experts=list(self.active.experts))

    def _generate(self, rid: int, request: dict) -> None:
        from workers.chat.generate import generate_reply

        if self.active is None:
            raise RequestError("no target loaded (send a load request first)")
        reply = generate_reply(self.active, request["messages"], request.get("settings") or {}, self.stop_flag,
                               lambda text: self.channel.send("token", rid, text=text))
        self.channel.send("done", rid, **reply)


def _is_user(exc: Exception) -> bool:
    """Errors the request caused (bad target, pickle-only weights, bad data): shown as one line, exit 2."""
    from core.errors import UserError

    return isinstance(exc, (UserError, RequestError, FileNotFoundError))


def cpu_threads() -> int:
    """Torch threads for chat on CPU: half the cores (at least 1), or $COCKPIT_CHAT_THREADS.

    Chat runs beside training; two processes each spinning all cores' OpenMP threads slowed the first
    token 80x on 2 cores (1.2 s instead of 15 ms)."""
    return int(os.environ.get("COCKPIT_CHAT_THREADS") or max(1, (os.cpu_count() or 2) // 2))


def main() -> int:
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    channel = Channel()
    import peft  # noqa: F401  (imported before `ready`, so load times are model loads, not imports)
    import torch

    if not torch.cuda.is_available():
        torch.set_num_threads(cpu_threads())

    server = ChatServer(channel)
    server.serve(sys.stdin)
    return 0
