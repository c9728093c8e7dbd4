"""Pilot tests: every screen and key of the cockpit against real run stores of recorded events."""
import html
import re
import sys
import types

import pytest
from textual.content import Content

from core.config_load import load_curriculum
from core.run_state import GpuView, HardwareView, StageView

from core.store import RunStore
from tui.app import CockpitApp
from recorded import DEMO, GIB, T0, FakeClock, build_recorded_run, wait_until
from tui.chat_screen import ChatScreen
from tui.screens.dialogs import ConfirmScreen, HelpScreen
from tui.screens.gate import GateScreen, history_table
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen
from tui.widgets.curriculum import CurriculumPanel, progress_text
from tui.widgets.logs import EventList, LogTail
from tui.widgets.panels import hardware_text

BIG, SMALL = (120, 40), (80, 24)


@pytest.fixture
def gate_run(tmp_path):
    return build_recorded_run(tmp_path / "runs", "gate")


@pytest.fixture
def finished_run(tmp_path):
    return build_recorded_run(tmp_path / "runs", "finished", run_id="20231114-000000-demo")


def make_app(run, attach=True):
    return CockpitApp(run.root.parent, run if attach else None, clock=FakeClock(T0 + 200), user="alice", blink=False)


def run_screen(app) -> RunScreen:
    return next(s for s in app.screen_stack if isinstance(s, RunScreen))


async def attached(pilot):
    await wait_until(pilot, lambda: any(isinstance(s, RunScreen) and s.applied_count for s in pilot.app.screen_stack))


def screen_text(app) -> str:
    """Everything visible, as plain text."""
    svg = app.export_screenshot()
    rows = re.findall(r"<text [^>]*>(.*?)</text>", svg)
    return html.unescape(" ".join(rows)).replace("\xa0", " ")


def events_text(app) -> str:
    return "\n".join(line.text for line in run_screen(app).query_one(EventList).lines)


async def test_manual_gate_prompt_and_approve_with_note(gate_run):
    app = make_app(gate_run)
    async with app.run_test(size=BIG) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, GateScreen) and "Rules:" in screen_text(app))
        text = screen_text(app)
        assert "eval/accuracy" in text and ">= 0.5" in text and "0.92" in text and "pass" in text
        assert "pretrain" in text and "0.004" in text  # the metric at the earlier stage
        await pilot.press("n", *"fine", "enter", "a")
        await wait_until(pilot, lambda: RunStore(gate_run.db).decision("sft") is not None)
        decision = RunStore(gate_run.db).decision("sft")
        assert (decision["decision"], decision["by"], decision["note"]) == ("approve", "tui:alice", "fine")
        await wait_until(pilot, lambda: "approve sent" in events_text(app))
        await wait_until(pilot, lambda: "approve sent, waiting" in screen_text(app))
        assert not isinstance(app.screen, GateScreen)


async def test_gate_dialog_shows_eval_answers_and_opens_chat_on_the_checkpoint(gate_run):
    app = make_app(gate_run)
    async with app.run_test(size=BIG) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, GateScreen) and "eval answers" in screen_text(app))
        text = " ".join(screen_text(app).split())
        assert "✗ 7+9= → 7+7=15 expected 16" in text and "✓ 23+45= → 23+45=68" in text
        assert text.index("7+9=") < text.index("23+45=") and "40+40=" not in text  # wrong first, four shown
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ChatScreen))
        assert (app.screen.run, app.screen.stage) == (gate_run, "sft")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, GateScreen))


async def test_gate_reject_and_supervisor_decision_shows_in_events(gate_run):
    app = make_app(gate_run)
    async with app.run_test(size=BIG) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, GateScreen))
        await pilot.press("r")
        await wait_until(pilot, lambda: RunStore(gate_run.db).decision("sft") is not None)
        assert RunStore(gate_run.db).decision("sft")["decision"] == "reject"
        with RunStore(gate_run.db) as store:  # what the supervisor does next
            store.append("gate_decided", stage="sft", now=True, decision="reject", by="tui:alice", note=None)
            store.append("stage_finished", stage="sft", now=True, status="rejected", reason="rejected at the gate")
            store.update_stage("sft", status="rejected", reason="rejected at the gate")
        await wait_until(pilot, lambda: "gate reject by tui:alice" in events_text(app))
        await wait_until(pilot, lambda: "rejected" in screen_text(app))


async def test_escape_leaves_gate_pending_and_g_reopens_it(gate_run):
    app = make_app(gate_run)
    async with app.run_test(size=BIG) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, GateScreen))
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen)
        assert "awaiting your approval" in screen_text(app)
        await pilot.press("g")
        assert isinstance(app.screen, GateScreen)
        await pilot.press("escape")
        await pilot.press("enter")  # Enter on the pending stage opens its gate too
        assert isinstance(app.screen, GateScreen)
        assert RunStore(gate_run.db).decision("sft") is None


async def test_attach_to_finished_run_shows_the_whole_curriculum(finished_run):
    app = make_app(finished_run)
    async with app.run_test(size=BIG) as pilot:
        await attached(pilot)
        screen = run_screen(app)
        assert isinstance(app.screen, RunScreen)  # no gate prompt on a finished run
        text = screen_text(app)
        for words in ("pretrain", "sft", "dpo", "grpo", "final", "completed", "no GPU", "run finished: completed"):
            assert words in text, words
        assert [s.status for s in screen.snapshot.stages] == ["passed"] * 4 + ["completed"]
        await pilot.press("g")  # nothing pending: says so instead of opening anything
        assert isinstance(app.screen, RunScreen)


async def test_every_run_screen_action_is_in_the_command_palette(finished_run):
    app = make_app(finished_run)
    async with app.run_test(size=BIG) as pilot:
        await attached(pilot)
        titles = {c.title: c.help for c in app.get_system_commands(app.screen)}
        for action, key in (("Chat", "key c"), ("Compare", "key m"), ("Rollouts", "key o"), ("Stop run", "key s")):
            assert titles.get(action) == key, titles
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: app.screen.__class__.__name__ == "CommandPalette")


async def test_metric_keys_pick_and_cycle(finished_run):
    app = make_app(finished_run)
    async with app.run_test(size=BIG) as pilot:
        await attached(pilot)
        screen = run_screen(app)
        assert screen.metric == "loss"
        await pilot.press("4")
        assert screen.metric == "reward"
        await pilot.press("right_square_bracket")
        assert screen.metric == "kl"
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert screen.metric == "grad_norm"
        names = screen.metric_names()
        await pilot.press(str(names.index("eval/accuracy") + 1))
        assert screen.metric == "eval/accuracy"
        assert "Metrics · eval/accuracy = 0.93" in screen_text(app)
        chart = screen.query_one("#chart")
        gated = {s.name for s in load_curriculum(DEMO).stages if s.gate and "eval/accuracy" in s.gate.require}
        assert chart.data.thresholds and {t.stage for t in chart.data.thresholds} == gated


async def test_stop_asks_first_then_writes_the_command(gate_run):
    app = make_app(gate_run)
    async with app.run_test(size=BIG) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, GateScreen))
        await pilot.press("escape", "s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert isinstance(app.screen, RunScreen)
        await pilot.press("s", "y")
        await wait_until(pilot, lambda: "stop requested" in events_text(app))
        with RunStore(gate_run.db) as store:
            assert store.take_commands() == ["stop"]


async def test_q_detaches_without_asking_or_touching_the_run(gate_run):
    app = make_app(gate_run)
    async with app.run_test(size=BIG) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, GateScreen))
        await pilot.press("escape")
        assert "Detach (run continues)" in screen_text(app)
        await pilot.press("q")
    assert app.return_value == "detached"
    with RunStore(gate_run.db) as store:
        assert store.take_commands() == [] and store.decision("sft") is None
        assert store.get_meta("status") == "running"


async def test_help_screen_opens_and_closes(finished_run):
    app = make_app(finished_run)
    async with app.run_test(size=BIG) as pilot:
        await attached(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "filter the log" in screen_text(app) and "approve" not in screen_text(app)
        await pilot.press("end")  # the keys of the later screens are a scroll away
        await pilot.pause()
        assert "approve" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen)


async def test_log_filter_and_stage_choice(gate_run):
    app = make_app(gate_run)
    async with app.run_test(size=BIG) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, GateScreen))
        await pilot.press("escape")
        log = run_screen(app).query_one(LogTail)
        await wait_until(pilot, lambda: log.line_count > 5)
        await pilot.press("slash", *"step': 590", "enter")
        assert [s.text.rstrip() for s in log.lines] == ["loss 0.4344   grad 0.53     step 590"]
        await pilot.press("escape")
        assert log.line_count > 5
        run_screen(app).query_one(CurriculumPanel).focus()
        await pilot.press("k")  # up to pretrain: its log is shown
        await wait_until(pilot, lambda: log.stage == "pretrain" and log.line_count > 5)
        assert "Log · pretrain" in screen_text(app)


async def test_live_metrics_and_resume_reach_the_screen(gate_run):
    with RunStore(gate_run.db) as store:
        store.update_stage("sft", status="passed")
        store.update_stage("dpo", status="running", attempt=1, started_at=T0 + 300)
    app = make_app(gate_run)
    async with app.run_test(size=BIG) as pilot:
        await attached(pilot)
        screen = run_screen(app)
        with RunStore(gate_run.db) as store:
            store.append("stage_started", stage="dpo", now=True, attempt=1, total_steps=30)
            for step in range(1, 21):
                store.append_metrics("dpo", step, {"loss": 0.6, "rewards/margins": step / 10})
            store.flush()
        await wait_until(pilot, lambda: screen.snapshot.stage_named("dpo").step == 20)
        assert screen.snapshot.series_named("rewards/margins").xs[-1] == 1400 + 20
        with RunStore(gate_run.db) as store:
            store.supersede_after("dpo", 10)
            store.append("resumed", stage="dpo", step=10, now=True, from_checkpoint="checkpoint-10")
        await wait_until(pilot, lambda: screen.snapshot.series_named("rewards/margins").xs[-1] == 1410)
        assert "resumed from step 10" in events_text(app)


async def test_runs_screen_lists_runs_and_attaches(gate_run, finished_run):
    app = make_app(gate_run, attach=False)
    async with app.run_test(size=BIG) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and len(app.screen.rows) == 2)
        text = screen_text(app)
        assert gate_run.id in text and finished_run.id in text and "sft (gate pending)" in text
        await pilot.press("j", "enter")  # newest first: the second row is the finished run
        await attached(pilot)
        assert run_screen(app).paths == finished_run
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        await pilot.press("k", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, GateScreen))


async def test_n_starts_the_demo_and_attaches(gate_run, monkeypatch):
    made = []

    def new_run(config, runs_dir):
        made.append(config)
        return gate_run

    monkeypatch.setitem(sys.modules, "core.launch", types.SimpleNamespace(new_run=new_run))
    monkeypatch.setitem(sys.modules, "core.supervisor", types.SimpleNamespace(start_detached=lambda p: 4242))
    app = make_app(gate_run, attach=False)
    async with app.run_test(size=BIG) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.rows)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, GateScreen))
        assert str(made[0]) == "configs/demo.yaml"


async def test_small_terminal_still_shows_the_essentials(gate_run):
    app = make_app(gate_run)
    async with app.run_test(size=SMALL) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, GateScreen))
        assert "Approve" in screen_text(app) and "Reject" in screen_text(app)
        await pilot.press("escape")
        text = " ".join(screen_text(app).split())
        for words in ("gate pending", "supervisor silent", "no GPU", "Metrics · loss", "Detach", "? Help", "1 loss",
                      "3 grad", "8 acc"):
            assert words in text, words  # the picker stays, in short words; help leads the footer


@pytest.mark.parametrize("size", [BIG, SMALL])
async def test_zoom_gives_the_chart_or_the_focused_log_the_screen(finished_run, size):
    app = make_app(finished_run)
    async with app.run_test(size=size) as pilot:
        await attached(pilot)
        screen = run_screen(app)
        await pilot.press("z")
        assert screen.maximized is screen.query_one("#chart-box") and "Curriculum" not in screen_text(app)
        assert "z zoom" in " ".join(screen_text(app).split())
        await pilot.press("z")
        assert screen.maximized is None and "Curriculum" in screen_text(app)
        screen.query_one(LogTail).focus()
        await pilot.press("z")
        assert screen.maximized is screen.query_one("#log-box") and "Metrics" not in screen_text(app)


def test_hardware_lines_fit_the_80_column_panel():
    """Eight GPUs (a made-up sample: no GPU here) in lines of at most 24 cells, the small panel's width."""
    gpus = tuple(GpuView(i, "H100", (70.2 + i) * GIB, 80 * GIB, 97.0) for i in range(8))
    text = hardware_text(HardwareView("grpo-math", gpus, 93.5 * GIB, 812.0, 41, T0), run_live=True)
    lines = [Content.from_markup(line).plain for line in text.splitlines()]
    assert lines[1] == "0 70.2/80 GiB  88%  97%" and lines[-1] == "grpo-math, 41 procs"
    assert len(lines) == 11 and max(map(len, lines)) <= 24


def test_a_running_stage_fits_its_row_and_keeps_the_eta_before_the_bar():
    """The 80-column panel leaves 20 cells: the row once wrapped its ETA onto a line of its own."""
    stage = StageView(0, "pretrain", "pretrain", None, "running", 1, 800, 1600, 29.0, None, 0.0, 1.0, None)
    shown = {room: Content.from_markup(progress_text(stage, None, room)).plain for room in (14, 20, 26, 60)}
    assert shown[14] == "━━╌╌ 800/1600" and shown[20] == "800/1600 ETA 29s"
    assert shown[26].endswith(" 800/1600 ETA 29s") and "━" in shown[26]
    assert all(len(text) <= room for room, text in shown.items()), shown


@pytest.mark.parametrize("size", [BIG, SMALL])
async def test_curriculum_shows_final_accuracy_and_change_against_parent(finished_run, size):
    app = make_app(finished_run)
    async with app.run_test(size=size) as pilot:
        await attached(pilot)
        panel = run_screen(app).query_one(CurriculumPanel)
        lines = {line.strip("› ").split()[0]: line for line in str(panel.render()).splitlines() if "[b]" not in line}
        assert "600/600[/]  92.0% [dim]  n/c[/]" in lines["sft"]  # pretrain is scored as text, sft as chat
        assert "92.5% [$success] +0.5[/]" in lines["dpo"] and "93.0% [$success] +0.5[/]" in lines["grpo"]
        text = " ".join(screen_text(app).split())
        assert "800/800 0.4%" in text and "600/600 92.0% n/c" in text and "30/30 92.5% +0.5" in text


async def test_gate_dialog_shows_change_against_parent_and_warns_when_worse(gate_run):
    with RunStore(gate_run.db) as store:  # pretrain re-measured higher than sft: sft regressed
        store.append("eval_result", stage="pretrain", name="eval/accuracy", value=0.95, now=True)
    app = make_app(gate_run)
    async with app.run_test(size=SMALL) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, GateScreen) and "Rules:" in screen_text(app))
        screen = app.screen
        history = history_table(screen.gate, ["pretrain", "sft"], screen.snapshot.stage_named("sft"))
        assert re.search(r"\[\$error\] +-3\.0 pt\[/\]", history)  # red: a fall in accuracy
        text = " ".join(screen_text(app).split())
        assert "Δ vs pretrain" in text and "-3.0 pt" in text
        assert "⚠ sft is worse than its parent pretrain on eval/accuracy: -3.0 pt" in text
