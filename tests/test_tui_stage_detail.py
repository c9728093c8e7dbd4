"""The stage detail (Enter on a stage): settings, gate, metrics, checkpoints, attempts and a failure in full."""
import json
import math
import re
from pathlib import Path

import pytest

from core.runs import RunPaths
from core.store import RunStore
from recorded import T0, FakeClock, demo_store, frozen_store_time, wait_until
from test_tui import (BIG, SMALL, attached, finished_run, gate_run, make_app, run_screen,  # noqa: F401 (fixtures)
                      screen_text)
from tui.app import CockpitApp
from tui.screens.dialogs import HelpScreen, help_text
from tui.screens.gate import GateScreen
from tui.screens.run import RunScreen
from core.stage_detail import read_stage_detail
from tui.screens.stage_detail import StageDetailScreen
from tui.stage_detail_view import Palette, summary_text
from tui.widgets.curriculum import CurriculumPanel

STAGES = {"pretrain": 0, "sft": 1, "dpo": 2, "grpo": 3, "final": 4}
FAILED_ID = "20231114-120000-fault"
MESSAGE = ("Error while serializing: I/O error: File too large (os error 27) while writing "
           "stages/pretrain/checkpoints/checkpoint-430/model.safetensors\n"
           "the file system refuses files over 2 MiB for this process (ulimit -f 4096)")
REASON = f"SafetensorError: {MESSAGE}".splitlines()[0]  # what the supervisor keeps: the first line


def build_failed_run(directory: Path, run_id: str = FAILED_ID) -> RunPaths:
    """The demo curriculum whose pretrain failed at step 430 with a long, two-line exception (as recorded.py
    builds its runs: the store through RunStore, a fixed clock), with its stage folder as a worker leaves it."""
    paths, store, clock = demo_store(directory, run_id)
    with frozen_store_time(clock):
        store.update_stage("pretrain", status="running", attempt=1, started_at=clock.t, total_steps=800)
        store.append("stage_started", stage="pretrain", attempt=1, total_steps=800, pid=4242, world_size=1,
                     backend="hf", device="cpu (2 threads)", warm=False)
        for step in range(10, 431, 10):
            clock.advance(0.7)
            store.append_metrics("pretrain", step, {"loss": 0.9 + 4.7 * math.exp(-4 * step / 800),
                                                    "learning_rate": 2e-3 * (0.5 + 0.5 * math.cos(math.pi * step / 800)),
                                                    "grad_norm": 0.4 + 1.5 * math.exp(-3 * step / 800)})
            if step % 200 == 0:
                store.append("checkpoint_saved", stage="pretrain", step=step, complete=True,
                             path=f"stages/pretrain/checkpoints/checkpoint-{step}")
        store.flush()
        clock.advance(2)
        store.append("stage_finished", stage="pretrain", status="failed", reason=REASON, exit_code=1)
        store.update_stage("pretrain", status="failed", reason=REASON, finished_at=clock.t)
        store.append("run_finished", status="failed")
        store.set_meta(status="failed", finished_at=clock.t, heartbeat=clock.t)
        store.flush()
    store.close()
    kept = paths.stage_checkpoints("pretrain") / "checkpoint-200"  # 400 was removed since: recorded, not on disk
    kept.mkdir(parents=True)
    (kept / "trainer_state.json").write_text("{}")
    paths.stage_log("pretrain").write_text(f"[pretrain] 800 steps\nTraceback (most recent call last):\n{REASON}\n")
    paths.stage_failure("pretrain").write_text(json.dumps({"type": "SafetensorError", "message": MESSAGE,
                                                           "step": 430}))
    return paths


@pytest.fixture
def failed_run(tmp_path):
    return build_failed_run(tmp_path / "runs")


def flat(app) -> str:
    """The screen's text in one line: panel borders and scrollbars out, so that wrapped lines join up."""
    return " ".join(re.sub(r"[│▁▂▃▄▅▆▇█▏▎▍▌▋▊▉]", " ", screen_text(app)).split())


async def open_detail(pilot, stage: str) -> StageDetailScreen:
    """Attach, put the curriculum cursor on `stage`, press Enter; the detail once it has read the store."""
    app = pilot.app
    await attached(pilot)
    if not isinstance(app.screen, RunScreen):  # a gate prompt opened itself
        await pilot.press("escape")
    panel = app.screen.query_one(CurriculumPanel)
    panel.focus()
    panel.cursor = STAGES[stage]
    await pilot.press("enter")
    await wait_until(pilot, lambda: isinstance(app.screen, StageDetailScreen) and app.screen.detail is not None)
    return app.screen


# -- the data ---------------------------------------------------------------------------------------
def test_the_detail_reads_gate_deltas_checkpoints_and_the_full_failure(finished_run, failed_run):
    with RunStore(finished_run.db) as store:
        dpo = read_stage_detail(store, finished_run, "dpo")
        sft = read_stage_detail(store, finished_run, "sft")
        assert read_stage_detail(store, finished_run, "nope") is None
    rule = dpo.gate.rules[0]
    assert (rule.rule, rule.value, rule.threshold, rule.passed, rule.reference, rule.reference_value) == \
        (">= sft - 0.02", 0.925, 0.90, True, "sft", 0.92)
    assert dpo.gate.by == "rules" and dict(dpo.deltas)["eval/accuracy"] == pytest.approx(0.005)
    assert sft.gate.note == "accuracy well above the bar" and sft.deltas == ()
    assert dict(sft.not_comparable)["eval/accuracy"] == "pretrain measured it as text, sft as chat"
    assert [(c.step, c.state) for c in sft.checkpoints] == [(200, "gone"), (400, "gone")]
    assert sft.attempt == 2 and any("resumed from step 300" in text for _, text, _ in sft.history)
    with RunStore(failed_run.db) as store:
        failed = read_stage_detail(store, failed_run, "pretrain")
        waiting = read_stage_detail(store, failed_run, "dpo")
    assert failed.failure == f"SafetensorError: {MESSAGE}" and failed.failure_step == 430
    assert [(c.step, c.state) for c in failed.checkpoints] == [(200, "ok"), (400, "gone")]
    assert not waiting.gate.reached and waiting.gate.rules[0].threshold is None  # sft never measured
    assert waiting.gate.rules[0].rule == ">= sft + 0.005"


def test_a_stage_from_base_has_no_parent_to_compare_with(finished_run):
    with RunStore(finished_run.db) as store:
        store.update_stage("dpo", from_stage="base")  # `from: base`: a branch from model.base
        dpo = read_stage_detail(store, finished_run, "dpo")
    assert dpo.parent is None and dpo.parent_evals == () and dpo.deltas == ()
    assert "from the base model" in str(summary_text(dpo, Palette()))


# -- the screen -------------------------------------------------------------------------------------
async def test_enter_on_a_finished_stage_shows_its_gate_metrics_and_settings(finished_run):
    app = make_app(finished_run)
    async with app.run_test(size=BIG) as pilot:
        await open_detail(pilot, "dpo")
        text = flat(app)
        for words in ("Stage dpo", "auto approval", "eval/accuracy >= sft - 0.02 0.925 0.9 ✓ pass", "sft = 0.92",
                      "✓ approved by its rules at +0:01:52", "eval/accuracy 0.92 0.925 +0.5 pt",
                      "rewards/ margins 1.786", "full fine-tuning", "loss sigmoid,sft",
                      "512 prompts × 8 samples", "builtin:arithmetic-eval: accuracy, perplexity",
                      "final stages/dpo/final/ — not on disk", "finished passed"):
            assert words in text, words
        await pilot.press("escape")
        assert isinstance(app.screen, RunScreen)


async def test_a_manual_gate_decision_its_note_and_a_resumed_attempt(finished_run):
    app = make_app(finished_run)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_detail(pilot, "sft")
        text = flat(app)
        assert "manual approval" in text and "✓ approved by tui:alice at +0:01:48" in text
        screen.query_one("#detail-body").scroll_end(animate=False)
        await pilot.pause()
        text = flat(app)
        assert "recorded steps 200, 400 (no longer on disk)" in text
        assert "worker exited with code -9 (killed)" in text and "resumed from step 300" in text


async def test_a_change_that_cannot_be_compared_says_why(finished_run):
    app = make_app(finished_run)
    async with app.run_test(size=BIG) as pilot:
        await open_detail(pilot, "sft")
        text = flat(app)
        assert "eval/accuracy 0.004 0.92 n/c" in text
        assert "n/c: pretrain measured it as text, sft as chat" in text


@pytest.mark.parametrize("size", [BIG, SMALL])
async def test_a_failed_stage_shows_its_reason_in_full(failed_run, size):
    app = make_app(failed_run)
    async with app.run_test(size=size) as pilot:
        await attached(pilot)
        assert REASON not in flat(app)  # the curriculum row cuts it to its progress column
        await open_detail(pilot, "pretrain")
        text = flat(app)
        assert f"Failure SafetensorError: {' '.join(MESSAGE.split())}" in text
        assert "at step 430 · exit code 1 · worker log: stages/pretrain/worker.log" in text
        assert "Gate auto approval" in text and "not reached: the stage failed" in text


async def test_a_waiting_stage_tells_when_its_gate_and_eval_come(failed_run):
    app = make_app(failed_run)
    async with app.run_test(size=BIG) as pilot:
        screen = await open_detail(pilot, "dpo")
        screen.query_one("#detail-body").scroll_end(animate=False)
        await pilot.pause()
        text = flat(app)
        for words in ("not started yet", "eval/accuracy >= sft + 0.005 - ? –", "sft = not measured yet",
                      "reached when the stage ends", "measured when the stage ends", "Attempts not started"):
            assert words in text, words


async def test_enter_on_a_pending_gate_still_opens_the_gate_and_elsewhere_the_detail(gate_run):
    app = make_app(gate_run)
    async with app.run_test(size=BIG) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, GateScreen))
        await pilot.press("escape")
        panel = run_screen(app).query_one(CurriculumPanel)
        panel.focus()
        panel.cursor = STAGES["sft"]
        await pilot.press("enter")
        assert isinstance(app.screen, GateScreen)
        await pilot.press("escape")
        panel.cursor = STAGES["pretrain"]
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, StageDetailScreen) and app.screen.detail is not None)
        assert "eval/perplexity <= 4.0 2.71 4 ✓ pass" in flat(app)
        assert RunStore(gate_run.db).decision("sft") is None


async def test_the_detail_follows_a_live_stage(gate_run):
    app = make_app(gate_run)
    async with app.run_test(size=BIG) as pilot:
        screen = await open_detail(pilot, "dpo")
        assert "not started yet" in flat(app)
        with RunStore(gate_run.db) as store:
            store.update_stage("dpo", status="running", attempt=1, started_at=T0 + 300)
            store.append("stage_started", stage="dpo", now=True, attempt=1, total_steps=10)
            store.append_metrics("dpo", 5, {"loss": 0.6, "rewards/margins": 0.3})
            store.flush()
        await wait_until(pilot, lambda: screen.detail.last_step == 5, timeout_s=15)
        await wait_until(pilot, lambda: "5/10 steps" in flat(app))
        assert "rewards/ margins 0.3" in flat(app)


async def test_help_names_the_stage_detail(finished_run):
    app = make_app(finished_run)
    async with app.run_test(size=BIG) as pilot:
        await attached(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = " ".join(re.sub(r"\[/?[^\]]*\]", "", help_text()).split())
        assert "Enter open the stage: its settings, gate, metrics, checkpoints, failure (a pending gate: its dialog)" \
            in text
        assert "Stage ↑ ↓ / j k scroll Esc back to the run" in text


# -- snapshots --------------------------------------------------------------------------------------
def _detail_before(stage: str):
    async def run_before(pilot):
        await open_detail(pilot, stage)
        await pilot.pause()
    return run_before


def _app(run):
    return CockpitApp(run.root.parent, run, clock=FakeClock(T0 + 200), user="alice", blink=False)


@pytest.mark.parametrize("size", [BIG, SMALL], ids=["120x40", "80x24"])
def test_stage_detail_snapshot_finished(snap_compare, finished_run, size):
    assert snap_compare(_app(finished_run), terminal_size=size, run_before=_detail_before("dpo"))


@pytest.mark.parametrize("size", [BIG, SMALL], ids=["120x40", "80x24"])
def test_stage_detail_snapshot_failed(snap_compare, failed_run, size):
    assert snap_compare(_app(failed_run), terminal_size=size, run_before=_detail_before("pretrain"))
