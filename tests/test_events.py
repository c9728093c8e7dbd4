"""The event vocabulary: constants equal the stored strings, gate decisions in one vocabulary (legacy
pass/fail still read), one text per event for both front-ends, and finished runs polled slowly."""
import io
import typing

import pytest

from cli.batch import EventPrinter
from core.events import (PAYLOADS, RULES, RUN_TERMINAL, Decision, EventKind, RunStatus, StageStatus, describe,
                         gate_outcome)
from core.gates import GateReport, RuleCheck, policy_decision
from core.run_state import RunState
from core.status import summarize
from core.store import Event, RunStore
from recorded import build_recorded_run
from tui.poller import RunPoller


def _ev(kind, stage="sft", step=None, name=None, value=None, **data):
    return Event(1, 100.0, stage, kind, step, name, value, data)


def test_constants_are_the_strings_stores_hold():
    assert {s.value for s in StageStatus} == {"waiting", "running", "gate_pending", "passed", "completed", "failed",
                                              "rejected", "gate_failed", "stopped", "interrupted", "skipped"}
    assert RunStatus.REJECTED == "rejected" and EventKind.CHAT_TURN == "chat_turn" and Decision.APPROVE == "approve"
    assert "rejected" in RUN_TERMINAL and "running" not in RUN_TERMINAL and "created" not in RUN_TERMINAL


def test_every_kind_documents_its_data_and_the_recorded_run_keeps_to_it(tmp_path):
    assert set(PAYLOADS) == set(EventKind)
    with RunStore(build_recorded_run(tmp_path, "finished").db) as store:
        events = store.events(include_superseded=True)
    assert {ev.kind for ev in events} >= {EventKind.STAGE_STARTED, EventKind.GATE_DECIDED, EventKind.HARDWARE}
    for ev in events:
        assert set(ev.data) <= set(typing.get_type_hints(PAYLOADS[EventKind(ev.kind)])), ev.kind


@pytest.mark.parametrize("decision, by, status", [
    (Decision.APPROVE, "tui:alice", StageStatus.PASSED), (Decision.APPROVE, RULES, StageStatus.PASSED),
    (Decision.REJECT, RULES, StageStatus.GATE_FAILED), (Decision.REJECT, "policy:rules", StageStatus.REJECTED),
    (Decision.REJECT, "cli:bob", StageStatus.REJECTED),
    ("pass", RULES, StageStatus.PASSED), ("fail", RULES, StageStatus.GATE_FAILED),  # legacy stores
])
def test_gate_outcome_keeps_rules_failures_apart_from_rejections(decision, by, status):
    assert gate_outcome(decision, by) == status


def test_the_rules_decide_in_the_operators_words():
    failing = GateReport("sft", "auto", [RuleCheck("eval/accuracy", ">= 0.9", 0.5, 0.9, False)])
    assert failing.decision == Decision.REJECT and policy_decision(failing, "approve") == Decision.APPROVE
    assert GateReport("sft", "auto", []).decision == Decision.APPROVE


def test_describe_reads_legacy_and_current_gate_decisions():
    assert describe(_ev(EventKind.GATE_DECIDED, decision="pass", by=RULES)) == ("gate pass by rules", "good")
    assert describe(_ev(EventKind.GATE_DECIDED, decision="approve", by=RULES))[1] == "good"
    assert describe(_ev(EventKind.GATE_DECIDED, decision="reject", by="tui:a", note="no")) == \
        ("gate reject by tui:a — no", "error")
    assert describe(_ev(EventKind.STAGE_FINISHED, status="stopped", reason=None)) == ("finished stopped", "warn")
    assert describe(_ev(EventKind.RESUMED, step=0, from_checkpoint=None))[0] == \
        "resumed from step 0 (no complete checkpoint: restart)"
    assert describe(_ev(EventKind.METRIC, step=1, name="loss", value=1.0)) == ("", "info")
    assert describe(_ev(EventKind.CHAT_TURN, role="user", content="hi")) == ("", "info")


def test_batch_lines_and_the_event_list_say_the_same(tmp_path):
    paths = build_recorded_run(tmp_path, "gate")
    out = io.StringIO()
    printer = EventPrinter(paths, out, poll_s=60)
    printer.start()
    with RunStore(paths.db) as store:
        store.append(EventKind.STAGE_STARTED, stage="dpo", attempt=1, total_steps=30, device="cpu", backend="hf")
        store.append(EventKind.OOM_RETRY, stage="dpo", batch_size=4, grad_accum=2, attempt=2)
        store.append(EventKind.GATE_DECIDED, stage="dpo", decision="approve", by="policy:approve", note=None)
        store.append(EventKind.RUN_FINISHED, status="completed", now=True)
        events = store.events(after_id=store.last_event_id() - 4)
    printer.stop()
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines[0] == "> dpo: started (attempt 1, 30 steps) cpu hf"
    assert lines[1].startswith("! dpo: out of memory, retrying with batch 4 x 2")
    assert lines[2] == "= dpo: gate approve by policy:approve" and len(lines) == 3  # run_batch prints the end
    state = RunState()
    state.fold(events)
    assert [line.text for line in state.events] == [line.split(": ", 1)[1] for line in lines] + \
        ["run finished: completed"]


def test_a_rejected_run_is_finished_and_polled_slowly(tmp_path):
    paths = build_recorded_run(tmp_path, "gate")
    poller = RunPoller(paths)
    poller.poll()
    assert not poller.finished  # running
    with RunStore(paths.db) as store:
        store.set_meta(status=RunStatus.REJECTED)
    poller.poll()
    assert poller.finished
    poller.close()


def test_show_reads_a_legacy_store(tmp_path):
    stages = {s["name"]: s for s in summarize(build_recorded_run(tmp_path, "finished"))["stages"]}
    assert (stages["pretrain"]["gate"]["decision"], stages["pretrain"]["status"]) == ("pass", "passed")
    assert stages["sft"]["gate"]["note"] == "accuracy well above the bar" and stages["final"]["gate"] is None


def test_gate_rules_are_validated_once_per_config():
    state = RunState()
    config = {"stages": [{"name": "sft", "gate": {"require": {"eval/accuracy": {"min": 0.9}}}}]}
    state.set_meta({"config": config, "heartbeat": 1.0})
    validated = state.stage_gates
    state.set_meta({"config": {**config}, "heartbeat": 2.0})
    assert state.stage_gates is validated and validated["sft"].approval == "auto"
