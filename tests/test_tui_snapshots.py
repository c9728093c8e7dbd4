"""Snapshot tests of the cockpit's screens: frozen clock, fixed run ids and ages, no blinking cursor."""
from pathlib import Path

import pytest
from textual.widgets import DataTable

from core.chat_client import CompareResult, Reply
from core.targets import Target
from tui.app import CockpitApp
from tui.chat_screen import ChatScreen, ChatTargetsListed, ReplyFinished, TargetLoaded, TextArrived
from tui.compare_screen import CompareFinished, CompareScreen
from recorded import T0, FakeClock, build_recorded_run, wait_until
from tui.screens.gate import GateScreen
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen
from tui.widgets.logs import EventList


@pytest.fixture
def runs(tmp_path):
    d = tmp_path / "runs"
    gate = build_recorded_run(d, "gate")
    done = build_recorded_run(d, "finished", run_id="20231114-000000-demo")
    return d, gate, done


def app_for(runs_dir, run=None):
    return CockpitApp(runs_dir, run, clock=FakeClock(T0 + 200), user="alice", blink=False)


async def _run_screen_ready(pilot):
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.applied_count > 0)
    await wait_until(pilot, lambda: app.screen.query_one("#log").line_count > 0)


async def _gate_ready(pilot):
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, GateScreen))
    await pilot.press("escape")  # a screen under a dialog is not laid out again: let the event list reach its end
    events = pilot.app.screen.query_one(EventList)
    await wait_until(pilot, lambda: 0 < events.max_scroll_y == events.scroll_y)
    await pilot.press("g")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, GateScreen))


async def _runs_ready(pilot):
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, RunsScreen) and len(pilot.app.screen.rows) == 2)
    table, previous = pilot.app.screen.query_one(DataTable), None
    await wait_until(pilot, lambda: table.row_count == 2)  # the screen has its rows before the table does
    for _ in range(50):  # let the table lay its columns out for the rows just added (slower on a busy machine)
        await pilot.pause()
        layout = (table.virtual_size, tuple(c.get_render_width(table) for c in table.columns.values()))
        if layout == previous:
            break
        previous = layout


def test_run_screen_finished(snap_compare, runs):
    d, _, done = runs
    assert snap_compare(app_for(d, done), terminal_size=(120, 40), run_before=_run_screen_ready)


def test_run_screen_small_terminal(snap_compare, runs):
    d, _, done = runs
    assert snap_compare(app_for(d, done), terminal_size=(80, 24), run_before=_run_screen_ready)


def test_gate_prompt(snap_compare, runs):
    d, gate, _ = runs
    assert snap_compare(app_for(d, gate), terminal_size=(120, 40), run_before=_gate_ready)


def test_runs_screen(snap_compare, runs, monkeypatch):
    d, _, _ = runs
    monkeypatch.chdir(d.parent)  # the header shows the runs directory: keep it the same every time
    assert snap_compare(app_for(Path("runs")), terminal_size=(120, 40), run_before=_runs_ready)


def test_gate_prompt_small_terminal(snap_compare, runs):
    d, gate, _ = runs
    assert snap_compare(app_for(d, gate), terminal_size=(80, 24), run_before=_gate_ready)


def recorded_comparison() -> CompareResult:
    """A comparison as the chat worker returns it (made up here: the recorded run has no weights to load)."""
    targets = [Target("base", "/m/base"), Target("sft", "/m/sft", stage="sft", kind="sft"),
               Target("dpo", "/m/dpo", stage="dpo", kind="dpo")]
    rows = [{"prompt": f"{a}+{b}=", "answer": str(a + b)} for a, b in ((7, 9), (23, 45), (57, 12), (81, 9))]
    outputs = [["7+9=16", "23+45=", "57+12=", "81+9="], ["7+9=16=10+6", "23+45=68", "57+12=79", "81+9=90"],
               ["7+9=16", "23+45=68", "57+12=69", "81+9=90"]]
    results = [{"outputs": out, "right": [o.rsplit("=", 1)[-1] == r["answer"] for o, r in zip(out, rows)],
                "format": "chat", "perplexity": ppl, "answered": 4, "reward": None, "mean_length": 8.0,
                "accuracy": sum(o.rsplit("=", 1)[-1] == r["answer"] for o, r in zip(out, rows)) / 4}
               for out, ppl in zip(outputs, (9.1, 1.2, 1.1))]
    return CompareResult(targets, rows, results, [None, 0.92, 0.925], 1.5, 1, "builtin:arithmetic-eval")


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_compare_screen(snap_compare, runs, size):
    d, _, done = runs

    async def compared(pilot):
        await _run_screen_ready(pilot)
        screen = CompareScreen(done, auto_start=False)
        await pilot.app.push_screen(screen)
        await wait_until(pilot, lambda: "checkpoints" in str(screen.query_one("#compare-status").render()))
        screen.post_message(CompareFinished(recorded_comparison()))
        await wait_until(pilot, lambda: screen.result is not None)

    assert snap_compare(app_for(d, done), terminal_size=size, run_before=compared)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_chat_screen(snap_compare, runs, size):
    """A conversation as the chat worker's messages draw it (made up here, as for compare: the recorded run has
    no weights to load, and real load times and token rates would change every snapshot)."""
    d, _, done = runs
    targets = [Target("base", "/m/base"), Target("sft", "/m/sft", stage="sft", kind="sft"),
               Target("dpo", "/m/dpo", stage="dpo", kind="dpo")]

    async def chatted(pilot):
        await _run_screen_ready(pilot)
        screen = ChatScreen(targets[1], run=done, auto_open=False)
        await pilot.app.push_screen(screen)
        screen.post_message(ChatTargetsListed(targets, targets[1]))
        screen.post_message(TargetLoaded(targets[1], 0.84, True, False))
        await wait_until(pilot, lambda: not screen.query_one("#chat-input").disabled)
        screen.begin_turn("What is 57+98?")
        for piece in ("57+98", "=155"):
            screen.post_message(TextArrived(piece))
        screen.post_message(ReplyFinished(Reply("57+98=155", 7, 41.0, 88.0, False)))
        await wait_until(pilot, lambda: screen.last_reply is not None)

    assert snap_compare(app_for(d, done), terminal_size=size, run_before=chatted)
