"""What the run screen shows, folded from store rows into frozen snapshots (no Textual here).

`RunState` lives in the poller thread and is mutated there only; `RunState.snapshot()` hands the
screen an immutable `RunSnapshot`.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from core.config import Rule
from core.gates import rule_bounds
from core.status import parent_deltas
from core.store import Event
from tui.series import Series, SeriesView

CHART_METRICS = ("loss", "learning_rate", "grad_norm", "reward", "kl", "rewards/margins")
NOTABLE = ("stage_started", "stage_finished", "checkpoint_saved", "eval_result", "gate_pending",
           "gate_decided", "oom_retry", "stalled", "run_finished", "resumed", "log")
MAX_EVENT_LINES = 300


@dataclass(frozen=True)
class DeltaView:
    """An eval metric's change against the parent stage; no `value` when `reason` says the two are not comparable."""

    metric: str
    value: float | None
    reason: str | None = None


@dataclass(frozen=True)
class StageView:
    """One row of the curriculum: where the stage is and where it sits on the timeline."""

    idx: int
    name: str
    kind: str
    from_stage: str | None
    status: str
    attempt: int
    step: int | None
    total_steps: int | None
    eta_s: float | None
    reason: str | None
    x0: float
    x1: float
    approval: str | None
    accuracy: float | None = None  # the final eval/accuracy
    deltas: tuple[DeltaView, ...] = ()  # eval metrics against the parent (from) stage

    def delta(self, metric: str) -> DeltaView | None:
        """The change in `metric` against the parent stage, if both were measured."""
        return next((d for d in self.deltas if d.metric == metric), None)


@dataclass(frozen=True)
class Threshold:
    """A gate bound drawn on the chart across its stage's span."""

    metric: str
    stage: str
    bound: str  # "min" or "max"
    value: float
    x0: float
    x1: float


@dataclass(frozen=True)
class GateRuleView:
    metric: str
    rule: str
    value: float | None
    threshold: float | None
    passed: bool
    reference: str | None


@dataclass(frozen=True)
class GateView:
    """A gate waiting on its stage: the rules as measured and the metric's history."""

    stage: str
    approval: str
    passed: bool
    rules: tuple[GateRuleView, ...]
    history: tuple[tuple[str, tuple[tuple[str, float], ...]], ...]  # metric -> ((stage, value), ...)
    event_id: int
    decision_sent: str | None = None


@dataclass(frozen=True)
class GpuView:
    index: int
    name: str
    mem_used: float
    mem_total: float
    util: float | None


@dataclass(frozen=True)
class HardwareView:
    """The latest hardware sample of the run's process tree."""

    stage: str | None
    gpus: tuple[GpuView, ...]
    rss: float | None
    cpu: float | None
    procs: int | None
    ts: float


@dataclass(frozen=True)
class EventLine:
    """One entry of the event list."""

    id: int
    ts: float
    stage: str | None
    kind: str
    text: str
    severity: str  # "info", "good", "warn", "error"


@dataclass(frozen=True)
class RunSnapshot:
    """Everything the run screen draws, at one moment."""

    run_id: str
    name: str
    status: str
    created_at: float
    heartbeat: float | None
    stages: tuple[StageView, ...]
    series: tuple[SeriesView, ...]
    thresholds: tuple[Threshold, ...]
    events: tuple[EventLine, ...]
    hardware: HardwareView | None
    gate: GateView | None
    last_event_id: int
    newest_ts: float | None
    log_stage: str | None = None
    log_lines: tuple[str, ...] = ()
    log_total: int = 0
    finished_at: float | None = None  # from the supervisor; later events (chat turns) do not extend a run

    def series_named(self, name: str) -> SeriesView | None:
        return next((s for s in self.series if s.name == name), None)

    def stage_named(self, name: str) -> StageView | None:
        return next((s for s in self.stages if s.name == name), None)

    @property
    def running_stage(self) -> StageView | None:
        active = [s for s in self.stages if s.status in ("running", "gate_pending")]
        return active[-1] if active else None


@dataclass
class _Progress:
    """Steps seen for one stage and the first/last (step, ts) pair, for a rate and an ETA."""

    step: int | None = None
    first: tuple[int, float] | None = None
    last: tuple[int, float] | None = None

    def see(self, step: int, ts: float) -> None:
        if self.step is None or step > self.step:
            self.step = step
            self.last = (step, ts)
            if self.first is None:
                self.first = (step, ts)

    def rewind(self, step: int) -> None:
        self.step, self.first, self.last = step, None, None

    def eta(self, total: int | None) -> float | None:
        if not (total and self.first and self.last) or self.last[0] <= self.first[0]:
            return None
        rate = (self.last[0] - self.first[0]) / max(self.last[1] - self.first[1], 1e-9)
        return max(total - self.last[0], 0) / rate


@dataclass
class RunState:
    """Folds events into series, progress, gates and an event list; snapshot() freezes it."""

    series: dict[str, Series] = field(default_factory=dict)
    progress: dict[str, _Progress] = field(default_factory=dict)
    evals: dict[str, dict[str, float]] = field(default_factory=dict)
    eval_formats: dict[str, dict[str, str | None]] = field(default_factory=dict)
    gates: dict[str, tuple[int, float, dict]] = field(default_factory=dict)
    decided: set[str] = field(default_factory=set)
    events: deque = field(default_factory=lambda: deque(maxlen=MAX_EVENT_LINES))
    hardware: HardwareView | None = None
    offsets: dict[str, tuple[float, float]] = field(default_factory=dict)
    stage_rows: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    last_event_id: int = 0
    newest_ts: float | None = None
    series_cap: int = 512

    # -- inputs -------------------------------------------------------------------------------
    def set_stages(self, rows: list[dict]) -> None:
        """Stage rows from the store; they also fix each stage's span on the timeline."""
        self.stage_rows = rows
        x = 0.0
        for row in rows:
            width = float(row.get("total_steps") or 0)
            self.offsets[row["name"]] = (x, x + width)
            x += width

    def set_meta(self, meta: dict) -> None:
        self.meta = meta

    def fold(self, events: list[Event]) -> None:
        for ev in events:
            self.last_event_id = max(self.last_event_id, ev.id)
            self.newest_ts = ev.ts
            handler = _HANDLERS.get(ev.kind)
            if handler is not None:
                handler(self, ev)

    # -- handlers -----------------------------------------------------------------------------
    def _x(self, stage: str | None, step: int | None) -> float:
        x0, _ = self.offsets.get(stage or "", (0.0, 0.0))
        return x0 + float(step or 0)

    def _series(self, name: str) -> Series:
        if name not in self.series:
            self.series[name] = Series(name, self.series_cap)
        return self.series[name]

    def _on_metric(self, ev: Event) -> None:
        if ev.step is not None and ev.stage:
            self.progress.setdefault(ev.stage, _Progress()).see(ev.step, ev.ts)
        if ev.name in CHART_METRICS and ev.value is not None:
            self._series(ev.name).add(self._x(ev.stage, ev.step), ev.value)

    def _on_eval(self, ev: Event) -> None:
        if ev.name is None or ev.value is None:
            return
        self.evals.setdefault(ev.stage or "", {})[ev.name] = ev.value
        self.eval_formats.setdefault(ev.stage or "", {})[ev.name] = ev.data.get("format")
        _, x1 = self.offsets.get(ev.stage or "", (0.0, 0.0))
        self._series(ev.name).add(x1, ev.value)
        self._note(ev, f"{ev.name} = {ev.value:.4g}", "info")

    def _on_resumed(self, ev: Event) -> None:
        step = int(ev.step or 0)
        _, x1 = self.offsets.get(ev.stage or "", (0.0, 0.0))
        cut = self._x(ev.stage, step)
        hi = x1 if x1 > cut else float("inf")  # a stage of unknown length: drop everything after
        for series in self.series.values():
            series.drop_span(cut, hi)
        self.progress.setdefault(ev.stage or "", _Progress()).rewind(step)
        self._note(ev, f"resumed from step {step}", "warn")

    def _on_gate_pending(self, ev: Event) -> None:
        self.gates[ev.stage or ""] = (ev.id, ev.ts, ev.data)
        self.decided.discard(ev.stage or "")
        verdict = "rules pass" if ev.data.get("passed") else "rules FAIL"
        self._note(ev, f"gate pending ({ev.data.get('approval', '?')}), {verdict}", "warn")

    def _on_gate_decided(self, ev: Event) -> None:
        self.decided.add(ev.stage or "")
        d = ev.data
        good = d.get("decision") in ("approve", "pass")
        note = f" — {d['note']}" if d.get("note") else ""
        self._note(ev, f"gate {d.get('decision', '?')} by {d.get('by', '?')}{note}", "good" if good else "error")

    def _on_hardware(self, ev: Event) -> None:
        d = ev.data
        gpus = tuple(GpuView(int(g.get("index", i)), str(g.get("name", "gpu")), float(g.get("mem_used") or 0),
                             float(g.get("mem_total") or 0), g.get("util")) for i, g in enumerate(d.get("gpus") or []))
        self.hardware = HardwareView(ev.stage, gpus, d.get("rss"), d.get("cpu"), d.get("procs"), ev.ts)

    def _on_other(self, ev: Event) -> None:
        text, severity = describe(ev)
        if text:
            self._note(ev, text, severity)

    def _note(self, ev: Event, text: str, severity: str) -> None:
        self.events.append(EventLine(ev.id, ev.ts, ev.stage, ev.kind, text, severity))

    # -- output -------------------------------------------------------------------------------
    def snapshot(self, run_id: str, decision_sent: dict[str, str] | None = None) -> RunSnapshot:
        meta = self.meta
        return RunSnapshot(
            run_id=run_id, name=str(meta.get("name") or run_id), status=str(meta.get("status") or "?"),
            created_at=float(meta.get("created_at") or 0.0), heartbeat=meta.get("heartbeat"),
            stages=tuple(self._stage_views()),
            series=tuple(s.view() for s in self.series.values()),
            thresholds=tuple(self._thresholds()), events=tuple(self.events), hardware=self.hardware,
            gate=self._pending_gate(decision_sent or {}), last_event_id=self.last_event_id,
            newest_ts=self.newest_ts, finished_at=meta.get("finished_at"))

    def _stage_views(self) -> list[StageView]:
        views = []
        for row in self.stage_rows:
            name = row["name"]
            prog = self.progress.get(name, _Progress())
            x0, x1 = self.offsets.get(name, (0.0, 0.0))
            eta = prog.eta(row.get("total_steps")) if row.get("status") == "running" else None
            parent = row.get("from_stage")
            views.append(StageView(row["idx"], name, row["kind"], parent, row.get("status") or "waiting",
                                   int(row.get("attempt") or 0), prog.step, row.get("total_steps"), eta,
                                   row.get("reason"), x0, x1, _approval(self._stage_config(name)),
                                   self.evals.get(name, {}).get("eval/accuracy"), self._deltas(name, parent)))
        return views

    def _deltas(self, name: str, parent: str | None) -> tuple[DeltaView, ...]:
        """The stage's eval metrics against its parent's, comparable or not."""
        delta, skipped = parent_deltas(self.evals, self.eval_formats, name, parent)
        return tuple(sorted([DeltaView(m, v) for m, v in delta.items()] +
                            [DeltaView(m, None, why) for m, why in skipped.items()], key=lambda d: d.metric))

    def _stage_config(self, name: str) -> dict:
        stages = (self.meta.get("config") or {}).get("stages") or []
        return next((s for s in stages if s.get("name") == name), {})

    def _thresholds(self) -> list[Threshold]:
        found = []
        for name, (x0, x1) in self.offsets.items():
            require = ((self._stage_config(name).get("gate") or {}).get("require")) or {}
            for metric, rule in require.items():
                for bound, value in _bounds(rule, self.evals, metric):
                    found.append(Threshold(metric, name, bound, value, x0, x1))
        return found

    def open_gate(self) -> tuple[str, float] | None:
        """The stage whose gate waits undecided, with the time it started waiting."""
        for row in self.stage_rows:
            name = row["name"]
            if row.get("status") == "gate_pending" and name in self.gates and name not in self.decided:
                return name, self.gates[name][1]
        return None

    def _pending_gate(self, decision_sent: dict[str, str]) -> GateView | None:
        pending = [r["name"] for r in self.stage_rows if r.get("status") == "gate_pending"]
        for name in pending:
            if name in self.gates and name not in self.decided:
                event_id, _, data = self.gates[name]
                return gate_view(name, event_id, data, decision_sent.get(name))
        return None


def gate_view(stage: str, event_id: int, data: dict, decision_sent: str | None) -> GateView:
    rules = tuple(GateRuleView(str(r.get("metric")), str(r.get("rule", "")), r.get("value"), r.get("threshold"),
                               bool(r.get("passed")), r.get("reference")) for r in data.get("rules") or [])
    history = tuple((metric, tuple((s, float(v)) for s, v in per_stage.items() if v is not None))
                    for metric, per_stage in (data.get("history") or {}).items())
    return GateView(stage, str(data.get("approval", "manual")), bool(data.get("passed")), rules, history,
                    event_id, decision_sent)


def _approval(stage_cfg: dict) -> str | None:
    gate = stage_cfg.get("gate")
    return (gate.get("approval") or "auto") if gate else None


def _bounds(rule: dict, evals: dict[str, dict[str, float]], metric: str) -> list[tuple[str, float]]:
    """Absolute bounds, and relative ones once the reference stage has a value."""
    bounds = rule_bounds(Rule.model_validate(rule), metric, evals)
    return [("min" if b.op == ">=" else "max", b.threshold) for b in bounds if b.threshold is not None]


def describe(ev: Event) -> tuple[str, str]:
    """A short line for an event in the list, and how it should look."""
    d = ev.data
    if ev.kind == "stage_started":
        where = " ".join(str(d[k]) for k in ("device", "backend") if d.get(k))
        return f"started (attempt {d.get('attempt', 1)}, {d.get('total_steps') or '-'} steps) {where}".rstrip(), "info"
    if ev.kind == "stage_finished":
        status = d.get("status", "?")
        reason = f": {d['reason']}" if d.get("reason") else ""
        sev = "good" if status in ("completed", "passed") else "warn" if status == "stopped" else "error"
        return f"finished {status}{reason}", sev
    if ev.kind == "checkpoint_saved":
        return f"checkpoint step {ev.step}" + ("" if d.get("complete", True) else " (partial)"), "info"
    if ev.kind == "oom_retry":
        return f"out of memory, retry {d.get('attempt')} batch {d.get('batch_size')} x{d.get('grad_accum')}", "warn"
    if ev.kind == "stalled":
        return f"stalled: no step for {d.get('seconds', '?')} s", "warn"
    if ev.kind == "run_finished":
        status = d.get("status", "?")
        return f"run finished: {status}", "good" if status == "completed" else "error"
    if ev.kind == "log" and str(d.get("level", "")).lower() in ("warning", "warn", "error", "critical"):
        level = str(d.get("level")).lower()
        return str(d.get("message", ""))[:200], "error" if level in ("error", "critical") else "warn"
    return "", "info"


_HANDLERS = {
    "metric": RunState._on_metric,
    "eval_result": RunState._on_eval,
    "resumed": RunState._on_resumed,
    "gate_pending": RunState._on_gate_pending,
    "gate_decided": RunState._on_gate_decided,
    "hardware": RunState._on_hardware,
    **{k: RunState._on_other for k in ("stage_started", "stage_finished", "checkpoint_saved", "oom_retry",
                                       "stalled", "run_finished", "log")},
}
