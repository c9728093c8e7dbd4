"""What a run looks like from outside: the summary behind `cockpit show` and `cockpit runs`."""
from __future__ import annotations

import os
import time

from core.runs import RunPaths
from core.store import RunStore

HEARTBEAT_STALE_S = 15.0
LIVE_STATUSES = ("running", "created")


def supervisor_alive(meta: dict) -> bool:
    """True when the run's supervisor process exists and has heartbeated recently."""
    pid, beat = meta.get("supervisor_pid"), meta.get("heartbeat")
    if not pid or not _pid_exists(int(pid)):
        return False
    return beat is not None and time.time() - float(beat) < HEARTBEAT_STALE_S


def effective_status(meta: dict) -> str:
    """The run's status, with a dead supervisor's 'running' reported as 'interrupted'."""
    status = meta.get("status", "created")
    if status == "running" and not supervisor_alive(meta):
        return "interrupted"
    return status


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def summarize(paths: RunPaths) -> dict:
    """The run as `cockpit show --json` prints it."""
    with RunStore(paths.db) as store:
        meta = store.meta()
        gates = _gates(store)
        values, formats = eval_results(store)
        stages = [_stage_summary(store, row, gates.get(row["name"])) for row in store.stages()]
    for stage in stages:
        stage["delta"], stage["delta_skipped"] = parent_deltas(values, formats, stage["name"], stage["from"])
    final = next((s for s in reversed(stages) if "eval/accuracy" in s["metrics"]), None)
    return {
        "id": paths.id, "name": meta.get("name"), "status": effective_status(meta), "dir": str(paths.root),
        "created_at": meta.get("created_at"), "finished_at": meta.get("finished_at"),
        "overrides": meta.get("overrides") or [],
        "final_accuracy": final["metrics"]["eval/accuracy"] if final else None,
        "stages": stages,
    }


def _stage_summary(store: RunStore, row: dict, gate: dict | None) -> dict:
    return {
        "name": row["name"], "kind": row["kind"], "status": row["status"], "from": row["from_stage"],
        "attempt": row["attempt"], "checkpoint": row["checkpoint"], "reason": row["reason"],
        "started_at": row["started_at"], "finished_at": row["finished_at"],
        "last_step": store.last_step(row["name"]), "total_steps": row["total_steps"],
        "metrics": store.final_metrics(row["name"]), "gate": gate,
    }


def eval_results(store: RunStore) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, str | None]]]:
    """Per stage: each eval metric's last value, and the prompt format it was measured in (None if unrecorded)."""
    values: dict[str, dict[str, float]] = {}
    formats: dict[str, dict[str, str | None]] = {}
    for ev in store.events(kinds=["eval_result"]):
        if ev.stage and ev.name and ev.value is not None:
            values.setdefault(ev.stage, {})[ev.name] = ev.value
            formats.setdefault(ev.stage, {})[ev.name] = ev.data.get("format")
    return values, formats


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


def verdict(metric: str, delta: float) -> str:
    """'better', 'worse' or 'same' for a change of `delta` in `metric` (loss and perplexity are better lower)."""
    if delta == 0:
        return "same"
    lower_is_better = any(word in metric for word in ("loss", "perplexity"))
    return "better" if (delta < 0) == lower_is_better else "worse"


def _gates(store: RunStore) -> dict[str, dict]:
    """Per stage: the gate's rules (from gate_pending) and its decision (from gate_decided)."""
    gates: dict[str, dict] = {}
    for ev in store.events(kinds=["gate_pending", "gate_decided"]):
        gate = gates.setdefault(ev.stage, {"decision": None, "by": None, "note": None})
        if ev.kind == "gate_pending":
            gate.update(approval=ev.data.get("approval"), rules=ev.data.get("rules"), passed=ev.data.get("passed"),
                        decision=None, by=None, note=None)
        else:
            gate.update(decision=ev.data.get("decision"), by=ev.data.get("by"), note=ev.data.get("note"))
    return gates
