"""The event vocabulary: event kinds and their data, run and stage statuses, gate decisions, and one
text per event for every front-end.

The store holds plain strings; every constant here is a `StrEnum` whose value is that string, so a
member equals (and hashes like) the string read back. Adding an event kind = one `EventKind` member,
one payload `TypedDict` in `PAYLOADS`, and a line in `describe` if people should see it.
"""
from __future__ import annotations

from enum import StrEnum
from typing import Any, NotRequired, Protocol, TypedDict

from core.units import count, duration


class EventKind(StrEnum):
    """What an `events` row records; the row's `step`, `name` and `value` columns are noted where used."""

    STAGE_STARTED = "stage_started"
    METRIC = "metric"                      # step, name (TRL's key), value; no data
    LOG = "log"
    CHECKPOINT_SAVED = "checkpoint_saved"  # step
    CHECKPOINT_SKIPPED = "checkpoint_skipped"  # step: the checkpoint resume did not trust
    EVAL_RESULT = "eval_result"            # step, name ("eval/<metric>"), value
    GATE_PENDING = "gate_pending"
    GATE_DECIDED = "gate_decided"
    STAGE_FINISHED = "stage_finished"
    HARDWARE = "hardware"
    OOM_RETRY = "oom_retry"
    RESUMED = "resumed"                    # step: the step training restarts from
    STALLED = "stalled"                    # step: the last step seen
    RUN_FINISHED = "run_finished"
    CHAT_TURN = "chat_turn"                # stage: the chatted checkpoint's stage, if any
    ROLLOUT = "rollout"                    # step: one sampled completion of an RL stage and its rewards
    JOB_STATE = "job_state"                # a stage's Slurm job changed state (queued, running, ended)
    PHASE_STARTED = "phase_started"        # step: the first step of a context-length phase


class StageStatus(StrEnum):
    """Where one stage stands (the `stages.status` column)."""

    WAITING = "waiting"
    RUNNING = "running"
    GATE_PENDING = "gate_pending"
    PASSED = "passed"            # its gate approved it
    COMPLETED = "completed"      # no gate
    FAILED = "failed"
    REJECTED = "rejected"        # an operator or a --gate-policy rejected it
    GATE_FAILED = "gate_failed"  # its rules failed an auto gate
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"          # not run: a stage it starts from did not pass (runs again on resume)


class RunStatus(StrEnum):
    """Where a run stands (`meta.status`); `interrupted` is read, never written: a dead supervisor's run."""

    CREATED = "created"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    GATE_FAILED = "gate_failed"
    REJECTED = "rejected"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"


class Decision(StrEnum):
    """A gate decision, by an operator, a --gate-policy or (approval: auto) the rules themselves."""

    APPROVE = "approve"
    REJECT = "reject"


RULES = "rules"  # the `by` of a decision the gate's own rules made
GATE_POLICIES = (RULES, Decision.APPROVE, Decision.REJECT)  # what --batch does at a manual gate
LEGACY_APPROVE = "pass"  # stores written before one vocabulary recorded the rules' decision as pass/fail

STAGE_OK = frozenset({StageStatus.PASSED, StageStatus.COMPLETED})
STAGE_ACTIVE = frozenset({StageStatus.RUNNING, StageStatus.GATE_PENDING})
STAGE_ENDED_BADLY = frozenset({StageStatus.FAILED, StageStatus.REJECTED, StageStatus.GATE_FAILED,
                               StageStatus.STOPPED, StageStatus.INTERRUPTED})
RUN_LIVE = frozenset({RunStatus.CREATED, RunStatus.RUNNING})
RUN_TERMINAL = frozenset(RunStatus) - RUN_LIVE  # a run in these has ended for good (until resumed)
RUN_ENDING_STAGE = frozenset({StageStatus.GATE_FAILED, StageStatus.REJECTED, StageStatus.STOPPED})
GATE_STOPPED = frozenset({StageStatus.GATE_FAILED, StageStatus.REJECTED})  # an operator may override these
"""Stage outcomes that become the run's status as they are; any other failure makes the run `failed`."""
JOB_QUEUED = frozenset({"PENDING", "REQUEUED", "CONFIGURING", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD",
                        "SUSPENDED", "STARTING", "RECOVERING"})
"""Slurm and SkyPilot job states in which the worker does not run yet (or for now): the stage is queued.
(SkyPilot's STARTING: nodes being provisioned; RECOVERING: preempted, being relaunched.)"""
JOB_LIVE = JOB_QUEUED | {"UNKNOWN", "READY", "RUNNING", "COMPLETING", "RESIZING", "SIGNALING", "STAGE_OUT",
                         "WINDING_DOWN", "CANCELLING"}
"""Job states that are not an end (UNKNOWN: the scheduler has not listed a fresh job yet)."""

HEADLINE_METRICS = ("loss", "learning_rate", "grad_norm", "reward", "kl", "rewards/margins", "mean_token_accuracy",
                    "train/tokens_per_s")
"""The training metrics (TRL's key names) worth a human's eye; `--batch` prints them at each reported step."""


def _headline_without(*left_out: str) -> tuple[str, ...]:
    return tuple(m for m in HEADLINE_METRICS if m not in left_out)


CHART_METRICS = _headline_without("mean_token_accuracy")  # the run screen's charts, in picker order
SUMMARY_METRICS = _headline_without("learning_rate", "grad_norm", "kl", "rewards/margins", "mean_token_accuracy",
                                    "train/tokens_per_s")
"""The final training values `cockpit show` puts next to the eval metrics."""


def approves(decision: str | None) -> bool:
    """True for an approval, in today's words or a legacy store's ('pass')."""
    return decision in (Decision.APPROVE, LEGACY_APPROVE)


def gate_outcome(decision: str, by: str) -> StageStatus:
    """The stage status a gate decision leads to: passed, gate_failed (the rules) or rejected (anyone else)."""
    if approves(decision):
        return StageStatus.PASSED
    return StageStatus.GATE_FAILED if by == RULES else StageStatus.REJECTED


# -- payloads: each kind's `data` fields ----------------------------------------------------------
class StageStartedData(TypedDict, total=False):
    attempt: int
    total_steps: int | None
    pid: int
    world_size: int
    backend: str
    device: str          # "cpu (4 threads)", "cuda (NVIDIA H100)"
    params: dict[str, Any]
    threads: int
    warm: bool           # a prestarted interpreter ran it
    gradient_checkpointing: bool  # activations recomputed in the backward pass (training kinds)
    adapter: dict[str, int]  # trainable parameters per family: attention, mlp, experts, router, other


class LogData(TypedDict):
    level: str           # debug, info, warning, error
    message: str


class CheckpointSavedData(TypedDict, total=False):
    path: str
    complete: bool       # True only after the atomic rename into checkpoints/


class CheckpointSkippedData(TypedDict):
    path: str
    reason: str          # "model.safetensors truncated (1,024 bytes, manifest says 2,316,800)", "no manifest"


class EvalResultData(TypedDict, total=False):
    samples: int
    format: str          # the prompt format it was measured in: text or chat
    examples: list[dict[str, Any]]


class RuleCheckData(TypedDict):
    metric: str
    rule: str            # ">= 0.9", ">= sft - 0.01"
    value: float | None
    threshold: float | None
    passed: bool
    reference: str | None


class GatePendingData(TypedDict):
    approval: str        # auto or manual
    passed: bool         # every rule holds
    rules: list[RuleCheckData]
    history: dict[str, dict[str, float]]  # metric -> stage -> value


class GateDecidedData(TypedDict):
    decision: str        # a Decision; legacy stores also hold pass/fail
    by: str              # RULES, "policy:<policy>", "tui:<user>", "cli:<user>"
    note: str | None
    metrics: dict[str, float | None]
    rules: list[RuleCheckData]
    override: NotRequired[bool]  # an operator approved after the gate had failed or been rejected


class StageFinishedData(TypedDict):
    status: str          # a StageStatus
    reason: str | None
    exit_code: int


class GpuSample(TypedDict):
    index: int
    name: str
    mem_used: int        # bytes
    mem_total: int
    util: int | None     # percent


class HardwareData(TypedDict):
    gpus: list[GpuSample]
    rss: int             # bytes, the worker's whole process tree
    cpu: float           # percent of one core
    procs: int


class OomRetryData(TypedDict):
    batch_size: int
    grad_accum: int
    attempt: int


class ResumedData(TypedDict):
    from_checkpoint: str | None  # None: no complete checkpoint, the stage restarts


class PhaseStartedData(TypedDict):
    phase: int       # 1-based
    phases: int
    max_length: int  # tokens per sequence from this step on


class StalledData(TypedDict):
    seconds: int


class JobStateData(TypedDict):
    job: str         # "slurm job 1234 (partition gpu)"
    state: str       # the scheduler's word: PENDING, RUNNING, PREEMPTED, ...
    waited_s: float  # since submission


class RunFinishedData(TypedDict):
    status: str          # a RunStatus


class ChatTurnData(TypedDict, total=False):
    session: str
    target: str          # "RUN:STAGE", "RUN:STAGE@STEP" or a folder
    settings: dict[str, Any]
    role: str            # user or assistant
    content: str
    ttft_ms: float | None       # assistant turns: latency and speed
    tokens_per_s: float | None
    tokens: int
    stopped: bool
    expert: str | None          # a route stage's turn: the expert that answered


class RolloutTurn(TypedDict, total=False):
    role: str            # assistant or tool
    content: str
    tool_calls: list[dict[str, Any]]  # {"name", "arguments"} as the policy wrote them


class RolloutData(TypedDict):
    sample: int          # its place among the step's stored samples
    prompt: str          # the last user turn (or the text prompt)
    turns: list[RolloutTurn]
    rewards: dict[str, float | None]  # reward function -> value (None: the function had nothing to say)
    total: float         # what the trainer optimises: the rewards summed


class NoData(TypedDict):
    pass


PAYLOADS: dict[EventKind, type] = {
    EventKind.STAGE_STARTED: StageStartedData, EventKind.METRIC: NoData, EventKind.LOG: LogData,
    EventKind.CHECKPOINT_SAVED: CheckpointSavedData, EventKind.CHECKPOINT_SKIPPED: CheckpointSkippedData,
    EventKind.EVAL_RESULT: EvalResultData, EventKind.GATE_PENDING: GatePendingData,
    EventKind.GATE_DECIDED: GateDecidedData, EventKind.STAGE_FINISHED: StageFinishedData,
    EventKind.HARDWARE: HardwareData, EventKind.OOM_RETRY: OomRetryData, EventKind.RESUMED: ResumedData,
    EventKind.STALLED: StalledData, EventKind.RUN_FINISHED: RunFinishedData, EventKind.CHAT_TURN: ChatTurnData,
    EventKind.ROLLOUT: RolloutData, EventKind.JOB_STATE: JobStateData, EventKind.PHASE_STARTED: PhaseStartedData,
}


# -- one text per event ---------------------------------------------------------------------------
class EventLike(Protocol):
    kind: str
    step: int | None
    name: str | None
    value: float | None
    data: dict


def describe(ev: EventLike) -> tuple[str, str]:
    """A short line for an event, and its severity (info, good, warn, error); no text: not worth a line."""
    explain = _DESCRIBE.get(ev.kind)
    return explain(ev) if explain else ("", "info")


def _stage_started(ev: EventLike) -> tuple[str, str]:
    d = ev.data
    where = " ".join(str(d[k]) for k in ("device", "backend") if d.get(k))
    text = f"started (attempt {d.get('attempt', 1)}, {d.get('total_steps') or '-'} steps) {where}".rstrip()
    if d.get("adapter"):
        text += "; trains " + ", ".join(f"{family} {count(n)}" for family, n in d["adapter"].items())
    return text, "info"


def _stage_finished(ev: EventLike) -> tuple[str, str]:
    status = ev.data.get("status", "?")
    reason = f": {ev.data['reason']}" if ev.data.get("reason") else ""
    if status == StageStatus.SKIPPED:
        return f"skipped{reason}", "warn"
    severity = "good" if status in STAGE_OK else "warn" if status == StageStatus.STOPPED else "error"
    return f"finished {status}{reason}", severity


def _checkpoint_saved(ev: EventLike) -> tuple[str, str]:
    return f"checkpoint step {ev.step}" + ("" if ev.data.get("complete", True) else " (partial)"), "info"


def _checkpoint_skipped(ev: EventLike) -> tuple[str, str]:
    return f"skipped checkpoint step {ev.step}: {ev.data.get('reason', '?')}", "warn"


def _eval_result(ev: EventLike) -> tuple[str, str]:
    if ev.name is None or ev.value is None:
        return "", "info"
    return f"{ev.name} = {ev.value:.4g}", "info"


def _gate_pending(ev: EventLike) -> tuple[str, str]:
    verdict = "rules pass" if ev.data.get("passed") else "rules FAIL"
    return f"gate pending ({ev.data.get('approval', '?')}), {verdict}", "warn"


def _gate_decided(ev: EventLike) -> tuple[str, str]:
    d = ev.data
    note = f" — {d['note']}" if d.get("note") else ""
    what = "overridden: approve" if d.get("override") else d.get("decision", "?")
    text = f"gate {what} by {d.get('by', '?')}{note}"
    return text, "good" if approves(d.get("decision")) else "error"


def _oom_retry(ev: EventLike) -> tuple[str, str]:
    d = ev.data
    return (f"out of memory, retrying with batch {d.get('batch_size')} x {d.get('grad_accum')} accumulation "
            f"(attempt {d.get('attempt')})"), "warn"


def _resumed(ev: EventLike) -> tuple[str, str]:
    restart = "" if ev.data.get("from_checkpoint", True) else " (no complete checkpoint: restart)"
    return f"resumed from step {int(ev.step or 0)}{restart}", "warn"


def _phase_started(ev: EventLike) -> tuple[str, str]:
    d = ev.data
    return (f"context phase {d.get('phase')}/{d.get('phases')}: sequences up to {d.get('max_length')} tokens "
            f"from step {int(ev.step or 0)}"), "info"


def _stalled(ev: EventLike) -> tuple[str, str]:
    return f"stalled, no new step for {ev.data.get('seconds', '?')} s", "warn"


def _run_finished(ev: EventLike) -> tuple[str, str]:
    status = ev.data.get("status", "?")
    return f"run finished: {status}", "good" if status == RunStatus.COMPLETED else "error"


def _job_state(ev: EventLike) -> tuple[str, str]:
    d = ev.data
    if d.get("state") in JOB_QUEUED:
        return f"queued on {d.get('job')}", "warn"
    waited = float(d.get("waited_s") or 0)
    if d.get("state") == "RUNNING":
        return f"running on {d.get('job')}" + (f" after {duration(waited)} queued" if waited >= 1 else ""), "info"
    return f"{d.get('job')}: {d.get('state')}", "warn"


def _log(ev: EventLike) -> tuple[str, str]:
    level = str(ev.data.get("level", "")).lower()
    if level not in ("warning", "warn", "error", "critical"):
        return "", "info"
    return str(ev.data.get("message", ""))[:200], "error" if level in ("error", "critical") else "warn"


_DESCRIBE = {
    EventKind.STAGE_STARTED: _stage_started, EventKind.STAGE_FINISHED: _stage_finished,
    EventKind.CHECKPOINT_SAVED: _checkpoint_saved, EventKind.CHECKPOINT_SKIPPED: _checkpoint_skipped,
    EventKind.EVAL_RESULT: _eval_result, EventKind.GATE_PENDING: _gate_pending, EventKind.GATE_DECIDED: _gate_decided,
    EventKind.OOM_RETRY: _oom_retry, EventKind.RESUMED: _resumed, EventKind.STALLED: _stalled,
    EventKind.RUN_FINISHED: _run_finished, EventKind.LOG: _log, EventKind.JOB_STATE: _job_state,
    EventKind.PHASE_STARTED: _phase_started,
}
