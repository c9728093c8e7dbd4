"""A run folded from its store rows: stages, progress, evals, gates, an event list, hardware.

`RunState` is fed events (`fold`), stage rows and meta; `view()` freezes it into a `RunView`. The TUI
folds a live run this way (in its poller thread) and `cockpit show` folds a finished one.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.events import STAGE_ACTIVE, EventKind, GateDecidedData, StageStatus, describe
from core.gates import rule_bounds
from core.store import Event

if TYPE_CHECKING:
    from core.config import Rule

MAX_EVENT_LINES = 300
SAMPLED_TOGETHER_S = 3.0  # stages running at once (`parallel:`) are sampled in turn, each about once a second


@dataclass(frozen=True)
class DeltaView:
    """An eval metric's change against the parent stage; no `value` when `reason` says the two are not comparable."""

    metric: str
    value: float | None
    reason: str | None = None


@dataclass(frozen=True)
class EvalExample:
    """One held-out item as the stage's final eval answered it (a few wrong ones, then a few right ones)."""

    prompt: str
    output: str
    answer: str
    correct: bool


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
    examples: tuple[EvalExample, ...] = ()  # from the latest eval/accuracy
    phases: tuple[tuple[int, int], ...] = ()  # context phases begun: (first step, max_length)

    def delta(self, metric: str) -> DeltaView | None:
        """The change in `metric` against the parent stage, if both were measured."""
        return next((d for d in self.deltas if d.metric == metric), None)


@dataclass(frozen=True)
class Threshold:
    """A gate bound across its stage's span of the timeline."""

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
    """The latest hardware sample of the run's process tree (of each tree, added up, where stages run at once:
    `stage` then says how many)."""

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
class RunView:
    """A run at one moment, as folded from its store."""

    run_id: str
    name: str
    status: str
    created_at: float
    heartbeat: float | None
    stages: tuple[StageView, ...]
    thresholds: tuple[Threshold, ...]
    events: tuple[EventLine, ...]
    hardware: HardwareView | None
    gate: GateView | None
    last_event_id: int
    newest_ts: float | None
    finished_at: float | None = None  # from the supervisor; later events (chat turns) do not extend a run

    def stage_named(self, name: str) -> StageView | None:
        return next((s for s in self.stages if s.name == name), None)

    @property
    def running_stages(self) -> list[StageView]:
        """The stages running or at their gate: one, or several with `parallel:`."""
        return [s for s in self.stages if s.status in STAGE_ACTIVE]

    @property
    def running_stage(self) -> StageView | None:
        active = self.running_stages
        return active[-1] if active else None


@dataclass(frozen=True)
class StageGate:
    """A stage's gate as configured, its rules validated once."""

    approval: str
    rules: dict[str, Rule]


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
    """Folds events into progress, evals, gates and an event list; view() freezes it."""

    progress: dict[str, _Progress] = field(default_factory=dict)
    evals: dict[str, dict[str, float]] = field(default_factory=dict)
    eval_formats: dict[str, dict[str, str | None]] = field(default_factory=dict)
    examples: dict[str, tuple[EvalExample, ...]] = field(default_factory=dict)
    gates: dict[str, tuple[int, float, dict]] = field(default_factory=dict)  # stage -> gate_pending id, ts, data
    decisions: dict[str, GateDecidedData] = field(default_factory=dict)  # stage -> its gate's decision
    phases: dict[str, dict[int, int]] = field(default_factory=dict)  # stage -> context phase first step -> length
    events: deque = field(default_factory=lambda: deque(maxlen=MAX_EVENT_LINES))
    hardware: HardwareView | None = None
    hardware_of: dict[str, HardwareView] = field(default_factory=dict)  # stage -> its latest sample
    offsets: dict[str, tuple[float, float]] = field(default_factory=dict)
    stage_rows: list[dict] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    stage_gates: dict[str, StageGate] = field(default_factory=dict)
    last_event_id: int = 0
    newest_ts: float | None = None

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
        """The run's meta; its config's gates are validated only when the config changed."""
        if meta.get("config") != self.meta.get("config"):
            self.stage_gates = _stage_gates(meta.get("config") or {})
        self.meta = meta

    def fold(self, events: list[Event]) -> None:
        for ev in events:
            self.last_event_id = max(self.last_event_id, ev.id)
            self.newest_ts = ev.ts
            handler = _HANDLERS.get(ev.kind, RunState._on_other)
            handler(self, ev)

    # -- the timeline -------------------------------------------------------------------------
    def x(self, stage: str | None, step: int | None) -> float:
        """Where `step` of `stage` lies on the run's timeline (stages laid end to end)."""
        x0, _ = self.span(stage)
        return x0 + float(step or 0)

    def span(self, stage: str | None) -> tuple[float, float]:
        return self.offsets.get(stage or "", (0.0, 0.0))

    # -- handlers -----------------------------------------------------------------------------
    def _on_metric(self, ev: Event) -> None:
        if ev.step is not None and ev.stage:
            self.progress.setdefault(ev.stage, _Progress()).see(ev.step, ev.ts)

    def _on_eval(self, ev: Event) -> None:
        if ev.name is None or ev.value is None:
            return
        self.evals.setdefault(ev.stage or "", {})[ev.name] = ev.value
        self.eval_formats.setdefault(ev.stage or "", {})[ev.name] = ev.data.get("format")
        if ev.data.get("examples"):
            self.examples[ev.stage or ""] = tuple(
                EvalExample(str(e.get("prompt", "")), str(e.get("output", "")), str(e.get("answer", "")),
                            bool(e.get("correct"))) for e in ev.data["examples"])
        self._on_other(ev)

    def _on_resumed(self, ev: Event) -> None:
        self.progress.setdefault(ev.stage or "", _Progress()).rewind(int(ev.step or 0))
        self._on_other(ev)

    def _on_phase(self, ev: Event) -> None:
        self.phases.setdefault(ev.stage or "", {})[int(ev.step or 0)] = int(ev.data.get("max_length") or 0)
        self._on_other(ev)

    def _on_stage_finished(self, ev: Event) -> None:
        self.hardware_of.pop(ev.stage or "", None)  # its last sample is no longer part of what runs
        self._on_other(ev)

    def _on_gate_pending(self, ev: Event) -> None:
        self.gates[ev.stage or ""] = (ev.id, ev.ts, ev.data)
        self.decisions.pop(ev.stage or "", None)
        self._on_other(ev)

    def _on_gate_decided(self, ev: Event) -> None:
        self.decisions[ev.stage or ""] = ev.data
        self._on_other(ev)

    def _on_hardware(self, ev: Event) -> None:
        d = ev.data
        gpus = tuple(GpuView(int(g.get("index", i)), str(g.get("name", "gpu")), float(g.get("mem_used") or 0),
                             float(g.get("mem_total") or 0), g.get("util")) for i, g in enumerate(d.get("gpus") or []))
        view = HardwareView(ev.stage, gpus, d.get("rss"), d.get("cpu"), d.get("procs"), ev.ts)
        self.hardware_of[ev.stage or ""] = view
        together = [v for v in self.hardware_of.values() if ev.ts - v.ts <= SAMPLED_TOGETHER_S]
        if len(together) > 1:
            rss, cpu, procs = (_sum([getattr(v, k) for v in together]) for k in ("rss", "cpu", "procs"))
            view = HardwareView(f"{len(together)} stages", gpus, rss, cpu, procs, ev.ts)
        self.hardware = view

    def _on_other(self, ev: Event) -> None:
        text, severity = describe(ev)
        if text:
            self.events.append(EventLine(ev.id, ev.ts, ev.stage, ev.kind, text, severity))

    # -- output -------------------------------------------------------------------------------
    def view(self, run_id: str, decision_sent: dict[str, str] | None = None) -> RunView:
        meta = self.meta
        return RunView(
            run_id=run_id, name=str(meta.get("name") or run_id), status=str(meta.get("status") or "?"),
            created_at=float(meta.get("created_at") or 0.0), heartbeat=meta.get("heartbeat"),
            stages=tuple(self._stage_views()), thresholds=tuple(self._thresholds()), events=tuple(self.events),
            hardware=self.hardware, gate=self._pending_gate(decision_sent or {}),
            last_event_id=self.last_event_id, newest_ts=self.newest_ts, finished_at=meta.get("finished_at"))

    def _stage_views(self) -> list[StageView]:
        views = []
        for row in self.stage_rows:
            name, parent, total = row["name"], row.get("from_stage"), row.get("total_steps")
            prog = self.progress.get(name, _Progress())
            x0, x1 = self.span(name)
            eta = prog.eta(total) if row.get("status") == StageStatus.RUNNING else None
            gate = self.stage_gates.get(name)
            views.append(StageView(row["idx"], name, row["kind"], parent, row.get("status") or StageStatus.WAITING,
                                   int(row.get("attempt") or 0), prog.step, total, eta, row.get("reason"), x0, x1,
                                   gate.approval if gate else None, self.evals.get(name, {}).get("eval/accuracy"),
                                   self._deltas(name, parent), self.examples.get(name, ()),
                                   tuple(sorted(self.phases.get(name, {}).items()))))
        return views

    def _deltas(self, name: str, parent: str | None) -> tuple[DeltaView, ...]:
        """The stage's eval metrics against its parent's, comparable or not."""
        delta, skipped = parent_deltas(self.evals, self.eval_formats, name, parent)
        return tuple(sorted([DeltaView(m, v) for m, v in delta.items()] +
                            [DeltaView(m, None, why) for m, why in skipped.items()], key=lambda d: d.metric))

    def _thresholds(self) -> list[Threshold]:
        found = []
        for name, (x0, x1) in self.offsets.items():
            gate = self.stage_gates.get(name)
            for metric, rule in (gate.rules if gate else {}).items():
                for bound in rule_bounds(rule, metric, self.evals):
                    if bound.threshold is not None:  # a relative bound waits for its reference's value
                        found.append(Threshold(metric, name, "min" if bound.op == ">=" else "max", bound.threshold,
                                               x0, x1))
        return found

    def open_gate(self) -> tuple[str, float] | None:
        """The stage whose gate waits undecided, with the time it started waiting."""
        name = self._undecided_gate()
        return (name, self.gates[name][1]) if name else None

    def _pending_gate(self, decision_sent: dict[str, str]) -> GateView | None:
        name = self._undecided_gate()
        if name is None:
            return None
        event_id, _, data = self.gates[name]
        return gate_view(name, event_id, data, decision_sent.get(name))

    def _undecided_gate(self) -> str | None:
        """The first stage waiting at a gate that has its gate_pending event and no decision yet."""
        return next((r["name"] for r in self.stage_rows if r.get("status") == StageStatus.GATE_PENDING
                     and r["name"] in self.gates and r["name"] not in self.decisions), None)


def _sum(values: list) -> float | None:
    """The sum of the known values; None when none is known."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


_HANDLERS = {
    EventKind.METRIC: RunState._on_metric,
    EventKind.EVAL_RESULT: RunState._on_eval,
    EventKind.RESUMED: RunState._on_resumed,
    EventKind.PHASE_STARTED: RunState._on_phase,
    EventKind.GATE_PENDING: RunState._on_gate_pending,
    EventKind.GATE_DECIDED: RunState._on_gate_decided,
    EventKind.HARDWARE: RunState._on_hardware,
    EventKind.STAGE_FINISHED: RunState._on_stage_finished,
}


def gate_view(stage: str, event_id: int, data: dict, decision_sent: str | None) -> GateView:
    rules = tuple(GateRuleView(str(r.get("metric")), str(r.get("rule", "")), r.get("value"), r.get("threshold"),
                               bool(r.get("passed")), r.get("reference")) for r in data.get("rules") or [])
    history = tuple((metric, tuple((s, float(v)) for s, v in per_stage.items() if v is not None))
                    for metric, per_stage in (data.get("history") or {}).items())
    return GateView(stage, str(data.get("approval", "manual")), bool(data.get("passed")), rules, history,
                    event_id, decision_sent)


def _stage_gates(config: dict) -> dict[str, StageGate]:
    """Each gated stage's approval and validated rules, from the run's config."""
    from core.config import Rule  # pydantic: only for runs that have gates

    gates = {}
    for stage in config.get("stages") or []:
        if gate := stage.get("gate"):
            rules = {metric: Rule.model_validate(rule) for metric, rule in (gate.get("require") or {}).items()}
            gates[stage.get("name")] = StageGate(gate.get("approval") or "auto", rules)
    return gates


def parent_deltas(values: dict[str, dict[str, float]], formats: dict[str, dict[str, str | None]], stage: str,
                  parent: str | None) -> tuple[dict[str, float], dict[str, str]]:
    """Each eval metric's change from `parent` to `stage`; for pairs measured in different formats, why none."""
    delta: dict[str, float] = {}
    skipped: dict[str, str] = {}
    mine, theirs = values.get(stage, {}), values.get(parent or "", {})
    for metric in mine.keys() & theirs.keys():
        fmt, parent_fmt = formats.get(stage, {}).get(metric), formats.get(parent or "", {}).get(metric)
        if fmt and parent_fmt and fmt != parent_fmt:
            skipped[metric] = f"{parent} measured it as {parent_fmt}, {stage} as {fmt}"
        else:
            delta[metric] = mine[metric] - theirs[metric]
    return dict(sorted(delta.items())), dict(sorted(skipped.items()))
