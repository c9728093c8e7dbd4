"""The TUI's folding of store events (no Textual): bounded series, resumes, gates, progress."""
from core.store import Event, RunStore
from tui.poller import LogTail, RunPoller
from tui.recorded import build_recorded_run
from tui.series import Series
from tui.state import RunState


def test_series_stays_bounded_and_keeps_the_shape():
    s = Series("loss", cap=256)
    for i in range(1_000_000):
        s.add(float(i), float(i))
    view = s.view()
    assert len(view.xs) <= 257
    assert view.xs[0] < 10_000 and view.xs[-1] == 999_999.0
    assert abs(view.ys[len(view.ys) // 2] - 500_000) < 10_000  # averages, not a distorted curve


def test_series_drop_span_forgets_resumed_steps():
    s = Series("loss", cap=64)
    for i in range(1, 11):
        s.add(float(i), 1.0)
    s.drop_span(5.0, 10.0)
    assert s.view().xs == (1.0, 2.0, 3.0, 4.0, 5.0)


def _ev(i, kind, stage="sft", step=None, name=None, value=None, **data):
    return Event(i, 100.0 + i, stage, kind, step, name, value, data)


def test_resumed_drops_that_stages_later_points_only():
    state = RunState()
    state.set_stages([{"idx": 0, "name": "pretrain", "kind": "pretrain", "total_steps": 100},
                      {"idx": 1, "name": "sft", "kind": "sft", "total_steps": 100}])
    events = [_ev(1, "metric", "pretrain", 100, "loss", 2.0)]
    events += [_ev(1 + s, "metric", "sft", s, "loss", 1.0) for s in range(10, 60, 10)]
    events += [_ev(20, "resumed", "sft", 30, from_checkpoint="x")]
    state.fold(events)
    assert state.series["loss"].view().xs == (100.0, 110.0, 120.0, 130.0)
    assert state.progress["sft"].step == 30


def test_poller_reads_a_recorded_run(tmp_path):
    paths = build_recorded_run(tmp_path, "gate")
    poller = RunPoller(paths)
    snap = poller.poll()
    assert [s.status for s in snap.stages] == ["passed", "gate_pending", "waiting", "waiting", "waiting"]
    assert snap.gate is not None and snap.gate.stage == "sft" and snap.gate.approval == "manual"
    assert snap.gate.rules[0].metric == "eval/accuracy" and snap.gate.rules[0].passed
    assert dict(snap.gate.history)["eval/accuracy"] == (("pretrain", 0.004), ("sft", 0.92))
    assert {t.metric for t in snap.thresholds} == {"eval/perplexity", "eval/accuracy"}
    assert snap.hardware is not None and snap.hardware.gpus == ()
    loss = snap.series_named("loss")
    assert loss.xs[-1] == 1400.0 and all(b > a for a, b in zip(loss.xs, loss.xs[1:]))  # resume left no duplicates
    assert snap.log_stage == "sft" and snap.log_lines[-1].startswith("[sft] eval")
    assert poller.poll() is None  # nothing new: no snapshot
    with RunStore(paths.db) as store:
        store.decide("sft", "approve", by="test")
    assert poller.poll().gate.decision_sent == "approve"
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
