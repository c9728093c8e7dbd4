"""The rollouts pane: an RL stage's stored completions, step by step, from a recorded run and a live store."""
import html
import re

import pytest

from core.events import EventKind
from core.run_state import StageView
from core.store import Event, RunStore
from recorded import ROLLOUT_STEPS, T0, FakeClock, build_recorded_run, wait_until
from tui.app import CockpitApp
from tui.screens.rollouts import (RolloutBook, RolloutsScreen, StageFacts, call_text, empty_text, pick_stage,
                                  rollout_of, stage_facts)
from tui.screens.run import RunScreen
from tui.widgets.curriculum import CurriculumPanel

BIG, SMALL = (120, 40), (80, 24)
STAGES = {"pretrain": 0, "sft": 1, "dpo": 2, "grpo": 3, "final": 4}


@pytest.fixture
def finished_run(tmp_path):
    return build_recorded_run(tmp_path / "runs", "finished", run_id="20231114-000000-demo")


@pytest.fixture
def gate_run(tmp_path):
    return build_recorded_run(tmp_path / "runs", "gate")


def make_app(run):
    return CockpitApp(run.root.parent, run, clock=FakeClock(T0 + 200), user="alice", blink=False)


def screen_text(app) -> str:
    svg = app.export_screenshot()
    rows = re.findall(r"<text [^>]*>(.*?)</text>", svg)
    return re.sub(r"\s+", " ", html.unescape(" ".join(rows)).replace("\xa0", " "))  # spaces between styled runs


async def open_pane(pilot, stage: str) -> RolloutsScreen:
    """Attach, put the curriculum cursor on `stage`, press o; the pane once it has read the store."""
    app = pilot.app
    await wait_until(pilot, lambda: any(isinstance(s, RunScreen) and s.applied_count for s in app.screen_stack))
    if not isinstance(app.screen, RunScreen):  # a gate prompt opened itself
        await pilot.press("escape")
    app.screen.query_one(CurriculumPanel).cursor = STAGES[stage]
    await pilot.press("o")
    await wait_until(pilot, lambda: isinstance(app.screen, RolloutsScreen) and app.screen.reads > 0)
    return app.screen


# -- the data -------------------------------------------------------------------------------------
def _ev(i, step, sample, total=1.0, **data):
    return Event(i, T0, "grpo", EventKind.ROLLOUT, step, None, None,
                 {"sample": sample, "prompt": "p", "turns": [], "rewards": {"exact_match": total}, "total": total,
                  **data})


def test_book_keeps_steps_newest_first_and_a_restored_sample_replaces_the_old():
    book = RolloutBook()
    assert book.add([rollout_of(_ev(1, 1, 0)), rollout_of(_ev(2, 1, 1, total=0.0)), rollout_of(_ev(3, 5, 0))]) == {1, 5}
    book.add([rollout_of(_ev(4, 1, 1, total=-1.0))])  # a resumed stage stored step 1 again
    assert book.steps == [5, 1]
    assert [r.total for r in book.samples(1)] == [1.0, -1.0] and book.mean_total(1) == 0.0
    assert book.samples(7) == [] and book.mean_total(7) is None


def test_tool_calls_read_as_the_policy_wrote_them():
    assert call_text({"name": "calculator", "arguments": {"expression": "1+2"}}) == \
        '→ calculator({"expression": "1+2"})'
    assert call_text({"name": "python", "arguments": "print(1)"}) == "→ python(print(1))"


def _view(idx, name, kind, status):
    return StageView(idx, name, kind, None, status, 1, None, None, None, None, 0.0, 0.0, None)


def test_the_pane_opens_on_the_cursor_stage_or_the_running_rl_stage():
    stages = [_view(0, "sft", "sft", "passed"), _view(1, "grpo", "grpo", "running"), _view(2, "m", "merge", "waiting")]
    assert pick_stage(stages, "grpo") == "grpo"
    assert pick_stage(stages, "sft") == "grpo"  # the RL stage training now is what one wants to read
    assert pick_stage([_view(0, "sft", "sft", "passed"), _view(1, "grpo", "grpo", "waiting")], "sft") == "sft"
    assert pick_stage([], None) is None


def test_empty_states_say_why():
    meta = {"status": "running", "config": {"stages": [
        {"name": "warm", "rollouts": {"every": None, "samples": 4}, "train": {"logging_steps": 5}},
        {"name": "grpo", "rollouts": {"every": 3, "samples": 2}, "train": {"logging_steps": 5}}]}}
    rows = [{"name": "warm", "kind": "sft", "status": "running"}, {"name": "grpo", "kind": "grpo", "status": "waiting"}]
    sft = empty_text(stage_facts(meta, rows, "warm"))
    assert "warm[/] (sft) stores no rollouts; grpo stages do" in sft and "2 samples at step 1 and every 3 steps" in sft
    assert "has not started yet" in empty_text(stage_facts(meta, rows, "grpo"))
    rows[1]["status"] = "running"
    assert "No rollouts yet" in empty_text(stage_facts(meta, rows, "grpo"))
    assert "stores no rollouts (" in empty_text(StageFacts("grpo", "grpo", "running", 3, 0))
    assert "stored no rollouts (it is failed)" in empty_text(StageFacts("grpo", "grpo", "failed", 3, 4))


# -- the pane -------------------------------------------------------------------------------------
async def test_o_opens_the_newest_step_with_tool_calls_rewards_and_step_keys(finished_run):
    app = make_app(finished_run)
    async with app.run_test(size=BIG) as pilot:
        pane = await open_pane(pilot, "grpo")
        assert pane.stage == "grpo" and pane.book.steps == sorted(ROLLOUT_STEPS, reverse=True)
        text = screen_text(app)
        assert "step 20 (newest) · 4 samples" in text
        assert '→ calculator({"expression": "37+65"})' in text and "102" in text  # a call and its result
        assert "exact_match 1" in text and "tool_use 0" in text and "total 2" in text
        assert "got an unexpected keyword argument 'expr'" in text  # a failed call's result, in full
        assert "Put together" in text and "the answer to the question." in text  # long text wraps, not cut
        await pilot.press("left_square_bracket")
        assert pane.step == 10 and "step 10 · 4 samples" in screen_text(app)
        await pilot.press("left_square_bracket", "left_square_bracket")  # stops at the oldest
        assert pane.step == 2 and "3 of 3 stored steps" in screen_text(app)
        await pilot.press("right")
        assert pane.step == 10
        await pilot.press("right_square_bracket")
        assert pane.step == 20
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen)


async def test_a_stage_without_rollouts_says_so(finished_run):
    app = make_app(finished_run)
    async with app.run_test(size=BIG) as pilot:
        pane = await open_pane(pilot, "sft")
        assert pane.step is None
        text = screen_text(app)
        assert "sft stores no rollouts; grpo stages do" in text
        assert "This run's grpo stores 4 samples at step 1 and every 20 steps" in text
        await pilot.press("left_square_bracket")  # nothing to move to: no error
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen)


async def test_rollouts_arrive_while_the_stage_trains(gate_run):
    app = make_app(gate_run)
    async with app.run_test(size=SMALL) as pilot:
        pane = await open_pane(pilot, "grpo")
        assert "grpo has not started yet; it stores 4 samples" in screen_text(app)
        with RunStore(gate_run.db) as store:
            store.update_stage("grpo", status="running")
            for sample in range(2):
                store.append("rollout", stage="grpo", step=1, sample=sample, prompt="What is 2+2?",
                             turns=[{"role": "assistant", "content": "4"}], rewards={"exact_match": 1.0}, total=1.0)
            store.flush()
        await wait_until(pilot, lambda: pane.step == 1 and "What is 2+2?" in screen_text(app))
        with RunStore(gate_run.db) as store:
            store.append("rollout", stage="grpo", step=3, sample=0, prompt="What is 3+3?", turns=[],
                         rewards={"exact_match": 0.0}, total=0.0, now=True)
        await wait_until(pilot, lambda: pane.step == 3)  # following the newest step
        await pilot.press("left_square_bracket")
        assert pane.step == 1 and not pane.follow
        with RunStore(gate_run.db) as store:
            store.append("rollout", stage="grpo", step=5, sample=0, prompt="What is 5+5?", turns=[],
                         rewards={"exact_match": 0.0}, total=0.0, now=True)
        await wait_until(pilot, lambda: pane.book.steps == [5, 3, 1])
        assert pane.step == 1  # reading an older step: it stays put
        await pilot.press("home")
        assert pane.step == 5 and pane.follow


# -- how it looks ---------------------------------------------------------------------------------
async def _pane_ready(pilot):
    await open_pane(pilot, "grpo")
    await pilot.pause()


@pytest.mark.parametrize("size", [BIG, SMALL], ids=["120x40", "80x24"])
def test_rollouts_pane_snapshot(snap_compare, finished_run, size):
    assert snap_compare(make_app(finished_run), terminal_size=size, run_before=_pane_ready)
