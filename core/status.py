"""What a run looks like from outside: the summary behind `cockpit show` and `cockpit runs`."""
from __future__ import annotations

import os
import time
from pathlib import Path

from core.events import EventKind, RunStatus
from core.run_state import RunState, parent_deltas
from core.runs import RunPaths, list_runs
from core.store import RunStore

HEARTBEAT_STALE_S = 15.0
SUMMARY_EVENTS = (EventKind.EVAL_RESULT, EventKind.GATE_PENDING, EventKind.GATE_DECIDED)


def supervisor_alive(meta: dict) -> bool:
    """True when the run's supervisor process exists and has heartbeated recently."""
    pid, beat = meta.get("supervisor_pid"), meta.get("heartbeat")
    if not pid or not _pid_exists(int(pid)):
        return False
    return beat is not None and time.time() - float(beat) < HEARTBEAT_STALE_S


def running_runs(directory: Path) -> list[RunPaths]:
    """The runs under `directory` whose supervisor is alive, oldest first."""
    found = []
    for paths in list_runs(directory):
        with RunStore(paths.db) as store:
            if supervisor_alive(store.meta()):
                found.append(paths)
    return found


def effective_status(meta: dict) -> str:
    """The run's status, with a dead supervisor's 'running' reported as 'interrupted'."""
    status = meta.get("status", RunStatus.CREATED)
    if status == RunStatus.RUNNING and not supervisor_alive(meta):
        return RunStatus.INTERRUPTED
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
    state = RunState()
    with RunStore(paths.db) as store:
        meta = store.meta()
        state.fold(store.events(kinds=SUMMARY_EVENTS))
        stages = [_stage_summary(store, row, _gate(state, row["name"])) for row in store.stages()]
    for stage in stages:
        stage["delta"], stage["delta_skipped"] = parent_deltas(state.evals, state.eval_formats, stage["name"],
                                                               stage["from"])
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


def delta_text(metric: str, delta: float) -> str:
    """A change against the parent stage: accuracies in percentage points (+1.2 pt), others as signed numbers."""
    return f"{delta * 100:+.1f} pt" if "accuracy" in metric else f"{delta:+.3g}"


def verdict(metric: str, delta: float) -> str:
    """'better', 'worse' or 'same' for a change of `delta` in `metric` (loss and perplexity are better lower)."""
    if delta == 0:
        return "same"
    lower_is_better = any(word in metric for word in ("loss", "perplexity"))
    return "better" if (delta < 0) == lower_is_better else "worse"


def _gate(state: RunState, stage: str) -> dict | None:
    """The stage's gate: its rules (from gate_pending) and its decision (from gate_decided), None if it had none."""
    pending, decided = state.gates.get(stage), state.decisions.get(stage)
    if pending is None and decided is None:
        return None
    gate = {"decision": None, "by": None, "note": None}
    if pending is not None:
        data = pending[2]
        gate.update(approval=data.get("approval"), rules=data.get("rules"), passed=data.get("passed"))
    if decided is not None:
        gate.update(decision=decided.get("decision"), by=decided.get("by"), note=decided.get("note"))
    return gate
