"""One stage as the stage detail shows it: resolved settings, gate rules with measured and reference values,
final metrics against the parent, checkpoints on disk, attempts, and the failure in full (read-only)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.checkpoints import CHECKPOINT, COMPLETE_MARKER, checkpoint_step, complete_checkpoints, verify_checkpoint
from core.config import Rule
from core.dag import BASE
from core.events import HEADLINE_METRICS, RUN_LIVE, EventKind, StageStatus, describe
from core.gates import rule_bounds
from core.run_state import RunState, parent_deltas
from core.runs import RunPaths
from core.status import SUMMARY_EVENTS
from core.store import Event, RunStore

HISTORY_KINDS = (EventKind.STAGE_STARTED, EventKind.OOM_RETRY, EventKind.RESUMED, EventKind.STALLED,
                 EventKind.CHECKPOINT_SKIPPED, EventKind.STAGE_FINISHED, EventKind.LOG)
STAGE_KINDS = HISTORY_KINDS + (EventKind.CHECKPOINT_SAVED, EventKind.GATE_PENDING, EventKind.GATE_DECIDED)
CHECKPOINT_EVENTS = (EventKind.CHECKPOINT_SAVED, EventKind.CHECKPOINT_SKIPPED, EventKind.RESUMED)
MAX_HISTORY = 40        # lines of the attempts' history kept (the newest)


# -- data: the stage as the store and its folder tell it ------------------------------------------
@dataclass(frozen=True)
class RuleLine:
    """One bound of a gate rule: measured (once the gate was reached) or as configured (before)."""

    metric: str
    rule: str
    value: float | None
    threshold: float | None
    passed: bool | None           # None: not checked yet
    reference: str | None = None
    reference_value: float | None = None


@dataclass(frozen=True)
class GateFacts:
    """The stage's gate: its approval mode, rules, and where the decision stands."""

    approval: str
    rules: tuple[RuleLine, ...]
    reached: bool                 # a gate_pending event exists (the stage finished training)
    passed: bool | None = None
    decision: str | None = None   # from gate_decided
    by: str | None = None
    note: str | None = None
    decided_at: float | None = None
    sent: tuple[str, str, str | None] | None = None  # (decision, by, note) written, not yet acted on


@dataclass(frozen=True)
class CheckpointLine:
    step: int
    state: str                    # "ok" (loadable), "gone" (recorded, not on disk), "bad" (on disk, unusable)
    note: str = ""


@dataclass(frozen=True)
class StageDetail:
    """Everything the detail screen shows about one stage, at one moment."""

    run_id: str
    run_live: bool
    created_at: float
    name: str
    kind: str
    parent: str | None
    base_model: str
    status: str
    attempt: int
    reason: str | None
    started_at: float | None
    finished_at: float | None
    total_steps: int | None
    last_step: int | None
    spec: dict
    gate: GateFacts | None
    training: tuple[tuple[str, float], ...]
    evals: tuple[tuple[str, float], ...]
    parent_evals: tuple[tuple[str, float], ...]
    deltas: tuple[tuple[str, float], ...]
    not_comparable: tuple[tuple[str, str], ...]
    checkpoints: tuple[CheckpointLine, ...]
    checkpoint_dir: str
    final: str
    final_exists: bool
    history: tuple[tuple[float, str, str], ...]   # (ts, text, severity)
    history_dropped: int
    failure: str | None           # the failed worker's exception, in full (failure.json)
    failure_step: int | None
    exit_code: int | None
    log: str


def read_stage_detail(store: RunStore, paths: RunPaths, stage: str, cache: dict | None = None) -> StageDetail | None:
    """The stage `stage` of the run in `store` (None if the run has no such stage). Pass the same `cache`
    on every read of a live stage: its checkpoints on disk are verified again only when they may have changed."""
    meta, rows = store.meta(), store.stages()
    row = next((r for r in rows if r["name"] == stage), None)
    if row is None:
        return None
    config = meta.get("config") or {}
    spec = next((s for s in config.get("stages") or () if isinstance(s, dict) and s.get("name") == stage), {})
    state = RunState()
    state.fold(store.events(kinds=SUMMARY_EVENTS))
    parent = row.get("from_stage") if row.get("from_stage") != BASE else None  # `from: base`: model.base
    deltas, skipped = parent_deltas(state.evals, state.eval_formats, stage, parent)
    events = store.events(kinds=STAGE_KINDS, stage=stage)
    metrics = store.final_metrics(stage)
    training = sorted(((k, v) for k, v in metrics.items() if not k.startswith("eval/")), key=_metric_order)
    history, dropped = _history(events)
    failure, failure_step = _recorded_failure(paths.stage_failure(stage)) \
        if row.get("status") == StageStatus.FAILED else (None, None)
    finished = [e for e in events if e.kind == EventKind.STAGE_FINISHED]
    final = Path(row.get("checkpoint") or paths.stage_final(stage))
    model = config.get("model") or {}
    return StageDetail(
        run_id=paths.id, run_live=meta.get("status") in RUN_LIVE, created_at=float(meta.get("created_at") or 0.0),
        name=stage, kind=row["kind"], parent=parent, base_model=str(model.get("base") or "?"),
        status=row.get("status") or StageStatus.WAITING, attempt=int(row.get("attempt") or 0),
        reason=row.get("reason"), started_at=row.get("started_at"), finished_at=row.get("finished_at"),
        total_steps=row.get("total_steps"), last_step=store.last_step(stage), spec=spec,
        gate=_gate_facts(spec.get("gate"), events, state.evals, store.decision(stage)),
        training=tuple(training), evals=tuple(sorted(state.evals.get(stage, {}).items())),
        parent_evals=tuple(sorted(state.evals.get(parent or "", {}).items())),
        deltas=tuple(deltas.items()), not_comparable=tuple(skipped.items()),
        checkpoints=_checkpoints(paths.stage_checkpoints(stage), events, row, {} if cache is None else cache),
        checkpoint_dir=_rel(paths.stage_checkpoints(stage), paths), final=_rel(final, paths),
        final_exists=final.is_dir(),
        history=history, history_dropped=dropped, failure=failure, failure_step=failure_step,
        exit_code=finished[-1].data.get("exit_code") if finished else None, log=_rel(paths.stage_log(stage), paths))


def _metric_order(item: tuple[str, float]) -> tuple:
    """The headline training metrics first (in their usual order), then the rest by name."""
    name = item[0]
    return (HEADLINE_METRICS.index(name), "") if name in HEADLINE_METRICS else (len(HEADLINE_METRICS), name)


def _gate_facts(spec: dict | None, events: list[Event], evals: dict, sent: dict | None) -> GateFacts | None:
    """The gate as checked (the latest gate_pending and the decision after it), else as configured."""
    pending = next((e for e in reversed(events) if e.kind == EventKind.GATE_PENDING), None)
    decided = next((e for e in reversed(events) if e.kind == EventKind.GATE_DECIDED
                    and (pending is None or e.id > pending.id)), None)
    if spec is None and pending is None and decided is None:
        return None
    approval = str((pending.data.get("approval") if pending else None) or (spec or {}).get("approval") or "auto")
    if pending is not None:
        rules = tuple(RuleLine(str(r.get("metric")), str(r.get("rule", "")), r.get("value"), r.get("threshold"),
                               bool(r.get("passed")), r.get("reference"),
                               _reference_value(r, pending.data, evals)) for r in pending.data.get("rules") or ())
    else:
        rules = _configured_rules((spec or {}).get("require") or {}, evals)
    facts = GateFacts(approval, rules, pending is not None, bool(pending.data.get("passed")) if pending else None)
    if decided is not None:
        d = decided.data
        return _replace(facts, decision=d.get("decision"), by=d.get("by"), note=d.get("note"), decided_at=decided.ts)
    if pending is not None and sent is not None:
        return _replace(facts, sent=(str(sent.get("decision")), str(sent.get("by")), sent.get("note")))
    return facts


def _replace(facts: GateFacts, **changes: Any) -> GateFacts:
    return GateFacts(**{**facts.__dict__, **changes})


def _reference_value(rule: dict, pending: dict, evals: dict) -> float | None:
    """The reference stage's value of a relative rule's metric, as the gate saw it (its history) or measured."""
    ref, metric = rule.get("reference"), rule.get("metric")
    if not ref:
        return None
    seen = ((pending.get("history") or {}).get(metric) or {}).get(ref)
    return seen if seen is not None else evals.get(ref, {}).get(metric)


def _configured_rules(require: dict, evals: dict) -> tuple[RuleLine, ...]:
    """Rules of a gate not reached yet: each bound with its threshold where it is known already."""
    lines = []
    for metric, raw in require.items():
        try:
            rule = Rule.model_validate(raw)
        except ValueError:
            lines.append(RuleLine(metric, json.dumps(raw), None, None, None))
            continue
        for bound in rule_bounds(rule, metric, evals):
            ref_value = evals.get(bound.reference, {}).get(metric) if bound.reference else None
            lines.append(RuleLine(metric, bound.text, None, bound.threshold, None, bound.reference, ref_value))
    return tuple(lines)


def _checkpoints(folder: Path, events: list[Event], row: dict, cache: dict) -> tuple[CheckpointLine, ...]:
    """Intermediate checkpoints: those on disk (loadable or not) and those recorded but gone."""
    # Verifying reads up to 128 KiB per file: only again when a checkpoint event came or the stage moved on.
    key = (row.get("status"), row.get("attempt"), tuple(e.id for e in events if e.kind in CHECKPOINT_EVENTS))
    if cache.get("key") != key:
        cache["key"], cache["lines"] = key, _scan_checkpoints(folder, events)
    return cache["lines"]


def _scan_checkpoints(folder: Path, events: list[Event]) -> tuple[CheckpointLine, ...]:
    loadable = {checkpoint_step(p) for p in complete_checkpoints(folder)}
    on_disk = {int(m.group(1)) for p in (folder.iterdir() if folder.is_dir() else ())
               if p.is_dir() and (m := CHECKPOINT.match(p.name))}
    recorded = {int(e.step) for e in events if e.kind == EventKind.CHECKPOINT_SAVED and e.step is not None
                and CHECKPOINT.match(Path(str(e.data.get("path", ""))).name)}
    skipped = {int(e.step): str(e.data.get("reason", "")) for e in events
               if e.kind == EventKind.CHECKPOINT_SKIPPED and e.step is not None}
    lines = []
    for step in sorted(loadable | on_disk | recorded):
        if step in loadable:
            lines.append(CheckpointLine(step, "ok"))
        elif step in on_disk:
            path = folder / f"checkpoint-{step}"
            why = skipped.get(step) or (verify_checkpoint(path) if (path / COMPLETE_MARKER).is_file() else None) \
                or f"incomplete (no {COMPLETE_MARKER})"
            lines.append(CheckpointLine(step, "bad", why))
        else:
            lines.append(CheckpointLine(step, "gone"))
    return tuple(lines)


def _history(events: list[Event]) -> tuple[tuple[tuple[float, str, str], ...], int]:
    """The stage's attempts as they happened: starts, retries, resumes, stalls, errors, the end."""
    lines = []
    for ev in events:
        if ev.kind not in HISTORY_KINDS:
            continue
        if ev.kind == EventKind.STAGE_FINISHED:  # the reason is shown in full above, not again here
            code = ev.data.get("exit_code")
            text = f"finished {ev.data.get('status', '?')}" + (f" (exit code {code})" if code else "")
            severity = describe(ev)[1]
        else:
            text, severity = describe(ev)
            if ev.kind == EventKind.STAGE_STARTED and "warm" in ev.data:
                text += ", warm start" if ev.data.get("warm") else ", cold start"
        if text:
            lines.append((ev.ts, text, severity))
    kept = lines[-MAX_HISTORY:]
    return tuple(kept), len(lines) - len(kept)


def _recorded_failure(path: Path) -> tuple[str | None, int | None]:
    """The exception a failed worker recorded (type: message, every line), and the step it failed at."""
    try:
        data = json.loads(path.read_text())
        text = f"{data['type']}: {data['message']}" if data.get("message") else str(data["type"])
        step = data.get("step")
        return text.strip() or None, int(step) if isinstance(step, (int, float)) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def _rel(path: Path, paths: RunPaths) -> str:
    """A path inside the run directory relative to it; others as they are."""
    try:
        return path.relative_to(paths.root).as_posix()
    except ValueError:
        return str(path)
