"""The client side of chat and compare: the chat worker subprocess (`python -m workers.chat`) and its requests.

The caller never holds a model: `ChatWorker` speaks the worker's JSON-lines protocol (see
workers/chat/server.py); `ChatSession` keeps one conversation's history and records each turn in the
run store as a `chat_turn` event (SQLite WAL, so this works while the run trains); `run_compare`
puts 2-6 targets through the same prompts, outputs side by side and metrics per target.
"""
from __future__ import annotations

import itertools
import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from core.datafiles import read_rows
from core.errors import UserError
from core.events import EventKind
from core.kinds import CHAT_ROWS
from core.store import RunStore
from core.targets import Target
from core.worker_proc import worker_env

READY_TIMEOUT_S = 120.0
FINAL_EVENTS = ("loaded", "done", "compared", "error")


class ChatWorkerError(RuntimeError):
    """The chat worker died or failed in a way the request did not cause."""


@dataclass
class GenerationSettings:
    """What the operator can turn while chatting; temperature 0 means greedy."""

    temperature: float = 0.7
    top_p: float = 0.95
    max_new_tokens: int = 128
    system: str = ""
    min_new_tokens: int = 0


@dataclass(frozen=True)
class Reply:
    """One finished reply, with latency measured at the caller (pipe included)."""

    text: str
    tokens: int
    ttft_ms: float | None
    tokens_per_s: float | None
    stopped: bool
    expert: str | None = None  # a route stage: the expert its router sent the prompt to


class ChatWorker:
    """The worker subprocess: start it, send requests, read each request's events."""

    def __init__(self):
        self._proc: subprocess.Popen | None = None
        self._ids = itertools.count(1)
        self._inboxes: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        self._stderr = tempfile.TemporaryFile()

    def start(self) -> "ChatWorker":
        """Spawn the worker and wait for its `ready` line."""
        self._proc = subprocess.Popen([sys.executable, "-m", "workers.chat"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._stderr, env=worker_env(),
                                      start_new_session=True, text=True, bufsize=1, encoding="utf-8",
                                      cwd=str(Path(__file__).resolve().parent.parent))
        ready = self._inbox(None)
        threading.Thread(target=self._read, name="chat-reader", daemon=True).start()
        checked(ready.get(timeout=READY_TIMEOUT_S), "ready")
        return self

    def request(self, op: str, **fields) -> int:
        """Send a request; its id names the events that answer it."""
        rid = next(self._ids)
        self._inbox(rid)
        self._send({"op": op, "id": rid, **fields})
        return rid

    def next_event(self, rid: int) -> dict:
        """The next event of one request (blocks); the request is forgotten after its final event."""
        event = self._inboxes[rid].get()
        if event["event"] in FINAL_EVENTS:
            with self._lock:
                del self._inboxes[rid]
        return event

    def events(self, rid: int) -> Iterator[dict]:
        """The events of one request, up to and including its final one."""
        while True:
            event = self.next_event(rid)
            yield event
            if event["event"] in FINAL_EVENTS:
                return

    def call(self, op: str, **fields) -> dict:
        """A request whose only interesting event is the final one (load, compare without progress)."""
        *_, last = self.events(self.request(op, **fields))
        return checked(last, None)

    def stop(self) -> None:
        """Stop the running generation or compare; its final event still arrives."""
        self._send({"op": "stop"})

    def close(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        try:
            self._send({"op": "quit"})
            self._proc.stdin.close()
        except (OSError, ChatWorkerError):
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> "ChatWorker":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- plumbing -----------------------------------------------------------------------------
    def _inbox(self, rid: int | None) -> queue.Queue:
        with self._lock:
            return self._inboxes.setdefault(rid, queue.Queue())

    def _send(self, message: dict) -> None:
        try:
            with self._lock:
                self._proc.stdin.write(json.dumps(message) + "\n")
                self._proc.stdin.flush()
        except (OSError, ValueError) as exc:
            raise ChatWorkerError(f"chat worker is gone: {self._stderr_tail()}") from exc

    def _read(self) -> None:
        """Route each event line to its request's inbox; on exit, fail every open request."""
        for line in self._proc.stdout:
            event = json.loads(line)
            with self._lock:
                inbox = self._inboxes.get(event.get("id"))
            if inbox is not None:
                inbox.put(event)
        self._proc.wait()
        gone = {"event": "error", "user": False,
                "message": f"chat worker exited ({self._proc.returncode}): {self._stderr_tail()}"}
        with self._lock:
            for inbox in self._inboxes.values():
                inbox.put(gone)

    def _stderr_tail(self, lines: int = 5) -> str:
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", errors="replace")
        return " | ".join([ln for ln in text.splitlines() if ln.strip()][-lines:]) or "no output"


@dataclass
class ChatSession:
    """One conversation with one target at a time; history survives switching targets."""

    worker: ChatWorker
    target: Target
    session: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    history: list[dict] = field(default_factory=list)

    def load(self, target: Target | None = None) -> dict:
        """Load (or switch to) a target; the worker's `loaded` event (load_s, reused_base, ...)."""
        self.target = target or self.target
        return self.worker.call("load", target=self.target.to_json())

    def send(self, text: str, settings: GenerationSettings,
             on_text: Callable[[str], None] | None = None) -> Reply:
        """Ask, stream the answer through `on_text`, keep both turns and record them in the run store."""
        self.history.append({"role": "user", "content": text})
        sent = time.perf_counter()
        rid = self.worker.request("generate", messages=self.history, settings=asdict(settings))
        first = None
        while (event := self._next(rid))["event"] == "token":
            first = first or time.perf_counter()
            if on_text:
                on_text(event["text"])
        done = checked(event, "done")
        reply = _reply(done, sent, first, time.perf_counter())
        self.history.append({"role": "assistant", "content": reply.text})
        self._record(text, reply, settings)
        return reply

    def stop(self) -> None:
        self.worker.stop()

    def _next(self, rid: int) -> dict:
        """The next event; Ctrl+C while waiting stops the generation and keeps what came so far."""
        while True:
            try:
                return self.worker.next_event(rid)
            except KeyboardInterrupt:
                self.stop()

    def reset(self) -> None:
        """A fresh conversation (a new session id in the store)."""
        self.history = []
        self.session = uuid.uuid4().hex[:12]

    def _record(self, text: str, reply: Reply, settings: GenerationSettings) -> None:
        paths = self.target.run_paths
        if paths is None:
            return
        common = {"session": self.session, "target": self.target.label, "settings": asdict(settings)}
        with RunStore(paths.db) as store:
            store.append(EventKind.CHAT_TURN, stage=self.target.stage, role="user", content=text, **common)
            store.append(EventKind.CHAT_TURN, stage=self.target.stage, role="assistant", content=reply.text,
                         ttft_ms=reply.ttft_ms, tokens_per_s=reply.tokens_per_s, tokens=reply.tokens,
                         stopped=reply.stopped, expert=reply.expert, now=True, **common)


def checked(event: dict, kind: str | None) -> dict:
    """The event itself, or the error it reports raised (UserError when the request was wrong)."""
    if event["event"] == "error":
        raise (UserError if event.get("user") else ChatWorkerError)(event["message"])
    if kind and event["event"] != kind:
        raise ChatWorkerError(f"expected {kind!r} from the chat worker, got {event!r}")
    return event


def _reply(done: dict, sent: float, first: float | None, finished: float) -> Reply:
    """Latency seen by the caller: first token line after the request; decode speed after it."""
    tokens = done["tokens"]
    span = finished - first if first else 0.0
    return Reply(done["text"], tokens, (first - sent) * 1000 if first else None,
                 (tokens - 1) / span if tokens > 1 and span > 0 else None, done["stopped"], done.get("expert"))


def chat_history(paths, session: str | None = None) -> list[dict]:
    """Recorded chat turns of a run (one session, or all), oldest first."""
    with RunStore(paths.db) as store:
        turns = [e.data | {"stage": e.stage, "ts": e.ts} for e in store.events(kinds=[EventKind.CHAT_TURN])]
    return [t for t in turns if session is None or t["session"] == session]


# -- compare -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptSet:
    """The prompts all targets answer: explicit rows (a file) or an eval spec's data; how to run them."""

    spec: dict
    rows: list[dict] | None
    source: str


TEXT_MODEL_NOTE = "a text model (no chat format): it continues what you type, e.g. '37+48='"
"""What the CLI and the chat screen say when a target loads in text format (a pretrain stage)."""
PER_PROMPT = ("outputs", "right", "routes")  # a target's lists with one entry per prompt (routes: route stages)


@dataclass(frozen=True)
class CompareResult:
    targets: list[Target]
    rows: list[dict]               # {"prompt", "answer"} as shown
    results: list[dict]            # per target: outputs, accuracy, perplexity, reward, mean_length, ...
    recorded: list[float | None]   # the eval/accuracy each target's stage recorded, when it has one
    seconds: float
    bases_loaded: int
    source: str

    def to_json(self) -> dict:
        return {"source": self.source, "seconds": round(self.seconds, 3), "bases_loaded": self.bases_loaded,
                "targets": [t.to_json() | {"recorded_accuracy": r} for t, r in zip(self.targets, self.recorded)],
                "metrics": [{"target": t.label, **{k: v for k, v in res.items() if k not in PER_PROMPT}}
                            for t, res in zip(self.targets, self.results)],
                "prompts": [row | {key: {t.label: (res.get(key) or [None] * len(self.rows))[i]
                                         for t, res in zip(self.targets, self.results)}
                                   for key in PER_PROMPT} for i, row in enumerate(self.rows)]}

    def notable(self, i: int) -> bool:
        """Prompt i is worth a look: the targets' outputs differ, or one of them is wrong."""
        outputs = {res["outputs"][i] for res in self.results}
        return len(outputs) > 1 or any(res["right"][i] is False for res in self.results)


def prompt_set(targets: list[Target], prompts_file: Path | None = None, limit: int | None = None,
               max_new_tokens: int | None = None) -> PromptSet:
    """A prompts file (.jsonl with prompt/messages and optional answer, or .txt), else the stages' eval set."""
    from core.config import EvalSpec  # the pydantic models: only once a command runs (`--help` stays instant)

    if prompts_file is not None:
        rows = [_prompt_row(r) for r in read_rows(prompts_file, CHAT_ROWS, limit=limit)]
        spec = EvalSpec(max_new_tokens=max_new_tokens or 64).model_dump(mode="json")
        return PromptSet(spec | {"max_samples": len(rows)}, rows, str(prompts_file))
    spec = stage_eval_spec(targets)
    spec["max_samples"] = min(spec["max_samples"], limit or spec["max_samples"])
    spec["max_new_tokens"] = max_new_tokens or spec["max_new_tokens"]
    data = spec["data"] if isinstance(spec["data"], str) else spec["data"]["source"]
    return PromptSet(spec, None, f"{data} (at most {spec['max_samples']} samples)")


def _prompt_row(row: dict) -> dict:
    return {"prompt": row["text"]} if set(row) == {"text"} else row


def stage_eval_spec(targets: list[Target]) -> dict:
    """The eval spec of the first target's stage that has one (then any stage of its run), else the default."""
    from core.config import EvalSpec

    for spec_path in _spec_files(targets):
        try:
            ev = json.loads(spec_path.read_text())["stage"].get("eval")
        except (OSError, ValueError, KeyError):
            continue
        if ev:
            return EvalSpec.model_validate(ev if isinstance(ev, dict) else {}).model_dump(mode="json")
    return EvalSpec().model_dump(mode="json")


def _spec_files(targets: list[Target]) -> list[Path]:
    own = [t.run_paths.stage_spec(t.stage) for t in targets if t.run_paths and t.stage]
    runs = {t.run: t.run_paths for t in targets if t.run_paths}
    return own + [p for paths in runs.values() for p in sorted(paths.root.glob("stages/*/spec.json"))]


def run_compare(worker: ChatWorker, targets: list[Target], prompts: PromptSet,
                on_progress: Callable[[str, int, int], None] | None = None) -> CompareResult:
    """Every target on the same prompts, one loaded base shared by the adapters that apply on it."""
    started = time.perf_counter()
    rid = worker.request("compare", targets=[t.to_json() for t in targets], eval=prompts.spec, rows=prompts.rows)
    for event in worker.events(rid):
        if event["event"] == "progress" and on_progress:
            on_progress(event["target"], event["done"], event["total"])
    result = checked(event, "compared")["result"]
    return CompareResult(targets, result["rows"], result["results"], [recorded_accuracy(t) for t in targets],
                         time.perf_counter() - started, result["bases_loaded"], prompts.source)


def recorded_accuracy(target: Target) -> float | None:
    """The eval/accuracy the run store holds for a stage's final output (None for checkpoints and folders)."""
    if not target.run_paths or not target.stage or target.step is not None:
        return None
    with RunStore(target.run_paths.db) as store:
        return store.final_metrics(target.stage).get("eval/accuracy")


def check_prompts_file(path: Path) -> Path:
    if not path.is_file():
        raise UserError(f"prompts file {path} not found")
    return path
