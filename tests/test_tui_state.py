"""The folding of store events behind the run screen (no Textual): bounded series, resumes, gates, progress."""
import pytest

from core.events import EventKind
from core.run_state import RunState
from core.store import Event, RunStore
from tui.poller import LogTail, RunPoller
from recorded import build_recorded_run
from tui.series import Series
from tui.state import ChartSeries


def test_series_stays_bounded_and_keeps_the_shape():
    s = Series("loss", cap=256)
    for i in range(1_000_000):
        s.add(float(i), float(i))
    view = s.view()
    assert len(view.xs) <= 257
    assert view.xs[0] < 10_000 and view.xs[-1] == 999_999.0
    assert abs(view.ys[len(view.ys) // 2] - 500_000) < 10_000  # averages, not a distorted curve


def test_stages_running_at_once_keep_the_timeline_in_order_and_their_hardware_adds_up():
    """`parallel:` interleaves two stages' points and samples; each stays in its own span of the timeline."""
    s = Series("loss", cap=64)
    for step in range(1, 200):
        s.add(100.0 + step, 1.0)  # left: steps 1.. of the span 100-300
        s.add(300.0 + step, 2.0)  # right: the span after it
    xs, ys = s.view().xs, s.view().ys
    assert list(xs) == sorted(xs) and len(xs) <= 65
    right = [y for x, y in zip(xs, ys) if x > 300]
    assert {y for x, y in zip(xs, ys) if x <= 300} == {1.0}
    assert right.count(2.0) >= len(right) - 1  # one averaged pair may span both stages
    state = RunState()
    state.fold([_ev(1, EventKind.HARDWARE, "left", rss=100.0, cpu=90.0, procs=1, gpus=[]),
                _ev(2, EventKind.HARDWARE, "right", rss=50.0, cpu=80.0, procs=1, gpus=[])])
    hw = state.hardware
    assert (hw.stage, hw.rss, hw.cpu, hw.procs) == ("2 stages", 150.0, 170.0, 2)
    state.fold([_ev(3, EventKind.STAGE_FINISHED, "left", status="completed"),
                _ev(4, EventKind.HARDWARE, "right", rss=60.0, cpu=85.0, procs=1, gpus=[])])
    assert (state.hardware.stage, state.hardware.rss) == ("right", 60.0)


def test_series_drop_span_forgets_resumed_steps():
    s = Series("loss", cap=64)
    for i in range(1, 11):
        s.add(float(i), 1.0)
    s.drop_span(5.0, 10.0)
    assert s.view().xs == (1.0, 2.0, 3.0, 4.0, 5.0)


def _ev(i, kind, stage="sft", step=None, name=None, value=None, **data):
    return Event(i, 100.0 + i, stage, kind, step, name, value, data)


def test_resumed_drops_that_stages_later_points_only():
    state, charts = RunState(), ChartSeries()
    state.set_stages([{"idx": 0, "name": "pretrain", "kind": "pretrain", "total_steps": 100},
                      {"idx": 1, "name": "sft", "kind": "sft", "total_steps": 100}])
    events = [_ev(1, EventKind.METRIC, "pretrain", 100, "loss", 2.0)]
    events += [_ev(1 + s, EventKind.METRIC, "sft", s, "loss", 1.0) for s in range(10, 60, 10)]
    events += [_ev(20, EventKind.RESUMED, "sft", 30, from_checkpoint="x")]
    state.fold(events)
    charts.fold(events, state)
    assert charts.series["loss"].view().xs == (100.0, 110.0, 120.0, 130.0)
    assert state.progress["sft"].step == 30


def test_poller_reads_a_recorded_run(tmp_path):
    paths = build_recorded_run(tmp_path, "gate")
    poller = RunPoller(paths)
    snap = poller.poll()
    assert [s.status for s in snap.stages] == ["passed", "gate_pending", "waiting", "waiting", "waiting"]
    assert snap.gate is not None and snap.gate.stage == "sft" and snap.gate.approval == "manual"
    assert snap.gate.rules[0].metric == "eval/accuracy" and snap.gate.rules[0].passed
    assert dict(snap.gate.history)["eval/accuracy"] == (("pretrain", 0.004), ("sft", 0.92))
    assert {t.metric for t in snap.thresholds} == {"eval/accuracy"}  # every gate of the demo is on accuracy
    assert snap.hardware is not None and snap.hardware.gpus == ()
    loss = snap.series_named("loss")
    assert loss.xs[-1] == 1400.0 and all(b > a for a, b in zip(loss.xs, loss.xs[1:]))  # resume left no duplicates
    assert snap.log_stage == "sft" and snap.log_lines[-1].startswith("[sft] eval")
    assert poller.poll() is None  # nothing new: no snapshot
    with RunStore(paths.db) as store:
        store.decide("sft", "approve", by="test")
    assert poller.poll().gate.decision_sent == "approve"
    poller.close()


def test_poller_reads_the_tables_only_after_a_commit_but_follows_the_log_meanwhile(tmp_path):
    paths = build_recorded_run(tmp_path, "gate")
    poller = RunPoller(paths)
    last = poller.poll().last_event_id
    reads = []
    events = poller.store.events
    poller.store.events = lambda **kw: reads.append(kw) or events(**kw)
    assert poller.poll() is None and reads == []  # nothing committed: one PRAGMA, no table read
    with paths.stage_log("sft").open("a") as log:
        log.write("[sft] a new line\n")
    snap = poller.poll()
    assert snap.log_lines[-1] == "[sft] a new line" and snap.last_event_id == last and reads == []
    with RunStore(paths.db) as store:
        store.append(EventKind.LOG, stage="sft", now=True, level="info", message="more")
    assert poller.poll().last_event_id > last and len(reads) == 1
    poller.close()


def test_log_tail_reads_only_whole_new_lines(tmp_path):
    f = tmp_path / "worker.log"
    f.write_text("one\ntw")
    tail = LogTail(f)
    assert tail.read() and list(tail.lines) == ["one"]
    with f.open("a") as fh:
        fh.write("o\nthree\n")
    assert tail.read() and list(tail.lines) == ["one", "two", "three"] and tail.total == 3
    assert not tail.read()


def _eval(i, stage, value, fmt=None, name="eval/accuracy"):
    return _ev(i, EventKind.EVAL_RESULT, stage, None, name, value, **({"format": fmt} if fmt else {}))


def test_stage_views_carry_accuracy_and_its_change_against_the_parent():
    state = RunState()
    state.set_stages([{"idx": 0, "name": "pretrain", "kind": "pretrain", "status": "passed"},
                      {"idx": 1, "name": "sft", "kind": "sft", "from_stage": "pretrain", "status": "passed"},
                      {"idx": 2, "name": "dpo", "kind": "dpo", "from_stage": "sft", "status": "passed"},
                      {"idx": 3, "name": "grpo", "kind": "grpo", "from_stage": "sft", "status": "passed"},
                      {"idx": 4, "name": "final", "kind": "merge", "from_stage": "grpo", "status": "waiting"}])
    state.fold([_eval(1, "pretrain", 0.004, "text"), _eval(2, "sft", 0.90, "chat"), _eval(3, "dpo", 0.912, "chat"),
                _eval(4, "grpo", 0.895, "chat"), _eval(5, "grpo", 1.5, "chat", "eval/perplexity")])
    views = {s.name: s for s in state.view("r").stages}
    assert views["pretrain"].accuracy == 0.004 and views["pretrain"].deltas == ()
    sft = views["sft"].delta("eval/accuracy")
    assert sft.value is None and sft.reason == "pretrain measured it as text, sft as chat"
    assert views["dpo"].delta("eval/accuracy").value == pytest.approx(0.012)
    assert views["grpo"].delta("eval/accuracy").value == pytest.approx(-0.005)  # against sft, its from stage
    assert views["grpo"].delta("eval/perplexity") is None  # sft has no perplexity to compare with
    assert views["final"].accuracy is None and views["final"].deltas == ()


def test_thresholds_use_the_gate_arithmetic_including_gain():
    state = RunState()
    state.set_stages([{"idx": 0, "name": "sft", "kind": "sft", "total_steps": 10},
                      {"idx": 1, "name": "grpo", "kind": "grpo", "from_stage": "sft", "total_steps": 10}])
    gate = {"require": {"eval/accuracy": {"min_of": "sft", "gain": 0.01},
                        "eval/perplexity": {"max_of": "sft", "tolerance": 0.5, "max": 3.0}}}
    state.set_meta({"config": {"stages": [{"name": "sft"}, {"name": "grpo", "gate": gate}]}})
    before = [(t.metric, t.bound, t.value) for t in state.view("r").thresholds]
    assert before == [("eval/perplexity", "max", 3.0)]  # relative bounds wait for sft's values
    state.fold([_eval(1, "sft", 0.9), _eval(2, "sft", 2.0, name="eval/perplexity")])
    after = sorted((t.metric, t.bound, round(t.value, 9)) for t in state.view("r").thresholds)
    assert after == [("eval/accuracy", "min", 0.91), ("eval/perplexity", "max", 2.5), ("eval/perplexity", "max", 3.0)]


def test_the_chart_never_draws_a_non_negative_series_below_zero():
    from tui.chart_scale import linear_range
    assert linear_range([0.02, 1.5, 0.4], [])[0] == 0.0  # a loss near zero: no negative axis
    assert linear_range([5.0, 6.0], [])[0] == pytest.approx(4.95)  # far from zero: 5 % room as before
    assert linear_range([-0.3, 0.2], [])[0] < -0.3  # a series that goes negative keeps its room
