"""The log pane: worker log lines as drawn (tui/log_lines.py) and the pane following or pinning a stage."""
import subprocess
import sys

import pytest

from core.store import RunStore
from recorded import T0, FakeClock, build_recorded_run, wait_until
from tui.app import CockpitApp
from tui.log_lines import (ERROR, LIBRARY, METRICS, PROGRESS, TEXT, WARNING, folded, lay_out, log_title,
                           metric_cells, short_key, shown)
from tui.screens.gate import GateScreen
from tui.screens.run import RunScreen
from tui.widgets.curriculum import CurriculumPanel
from tui.widgets.logs import EventList, LogTail

SFT_LINE = ("{'loss': '6.16', 'grad_norm': '0.5774', 'learning_rate': '0.0018', 'entropy': '6.187', "
            "'mean_token_accuracy': '0.02327', 'num_tokens': '6632', 'aux_loss': '2.01', 'epoch': '0.8333'}")
SFT_LINE_2 = ("{'loss': '5.999', 'grad_norm': '0.2232', 'learning_rate': '4.894e-05', 'entropy': '6.189', "
              "'mean_token_accuracy': '0.08433', 'num_tokens': '1.356e+04', 'aux_loss': '2.007', 'epoch': '1.667'}")
PEFT_WARNING = ("/work/main/.venv/lib/python3.11/site-packages/peft/tuners/tuners_utils.py:1123: RuntimeWarning: "
                "The following rank_pattern keys did not match any targeted module and were ignored: "
                "['.*\\.gate_up_proj'].")


# -- the formatter --------------------------------------------------------------------------------
def test_trl_metric_line_becomes_aligned_key_value_cells():
    first, second = shown(SFT_LINE, 56), shown(SFT_LINE_2, 56)
    assert first.kind == second.kind == METRICS
    rows = first.text.split("\n")
    assert rows[0].split() == ["loss", "6.16", "grad", "0.5774", "lr", "0.0018", "entropy", "6.187"]
    assert "tok_acc 0.02327" in first.text and "tokens 6.6k" in first.text and "epoch 0.8333" in first.text
    assert "lr 4.9e-05" in second.text and "tokens 13.6k" in second.text
    for a, b in zip(rows, second.text.split("\n")):  # the same keys sit in the same columns
        assert [a.index(k) for k in a.split()[::2]] == [b.index(k) for k in b.split()[::2]]
    assert all(len(row) <= 56 for row in rows)


def test_float_valued_dicts_and_non_metric_lines():
    assert shown("{'loss': 0.4344, 'grad_norm': 0.530, 'step': 590}", 80).text == "loss 0.4344   grad 0.53     step 590"
    assert metric_cells("{'name': 'sft', 'done': True}") is None
    assert metric_cells("{'loss': 1.0") is None
    assert shown("{'loss': 1.0", 80).kind == TEXT


def test_short_keys():
    assert [short_key(k) for k in ("learning_rate", "rewards/exact_match/mean", "completions/mean_length",
                                   "train_samples_per_second", "rewards/margins", "kl")] == \
        ["lr", "r/exact_match", "len", "samples/s", "r/margins", "kl"]


def test_lay_out_never_passes_the_width_and_knows_where_the_names_are():
    cells = metric_cells(SFT_LINE)
    for width in (20, 38, 56, 120):
        text, keys = lay_out(cells, width)
        assert all(len(row) <= width for row in text.split("\n"))
        assert [text[start:end] for start, end in keys] == [key for key, _ in cells]


def test_library_warning_is_one_dim_line_unless_asked_for_in_full():
    lines = folded(["[info] model loaded", PEFT_WARNING, "  warnings.warn(", SFT_LINE])
    assert lines == ["[info] model loaded", PEFT_WARNING, SFT_LINE]
    short = shown(PEFT_WARNING, 56)
    assert short.kind == LIBRARY and len(short.text) == 56 and short.text.startswith("RuntimeWarning: The following")
    assert short.text.endswith("…")
    full = shown(PEFT_WARNING, 56, full=True).text
    assert full.endswith("(peft/tuners/tuners_utils.py:1123)") and "gate_up_proj" in full
    assert shown("WARNING: something odd", 56).kind == LIBRARY


def test_progress_bars_fold_to_their_latest_state():
    bars = ["Map:  10%|#         | 1/10", "Map:  50%|#####     | 5/10", "Map: 100%|##########| 10/10", "done"]
    assert folded(bars) == bars[2:]
    assert shown(bars[2], 80).kind == PROGRESS


def test_worker_tags():
    assert shown("[info] final model saved", 80) == shown("final model saved", 80)
    assert shown("[warning] gradient overflow", 80).kind == WARNING
    assert shown("[error] worker failed", 80).kind == ERROR
    assert shown("Traceback (most recent call last):", 80).kind == ERROR


def test_log_title_and_no_textual_in_the_formatter():
    assert log_title("sft", pinned=False) == "Log · sft · following"
    assert log_title("pretrain", pinned=True) == "Log · pretrain · pinned"
    probe = "import sys, tui.log_lines; sys.exit(any(m.startswith('textual') for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", probe]).returncode == 0


# -- the pane -------------------------------------------------------------------------------------
@pytest.fixture
def gate_run(tmp_path):
    return build_recorded_run(tmp_path / "runs", "gate")


def make_app(run):
    return CockpitApp(run.root.parent, run, clock=FakeClock(T0 + 200), user="alice", blink=False)


async def at_run_screen(pilot) -> RunScreen:
    """Past the sft gate prompt the recorded run opens with, on the run screen with its log drawn."""
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, GateScreen))
    await pilot.press("escape")
    screen = pilot.app.screen
    await wait_until(pilot, lambda: screen.query_one(LogTail).line_count > 5)
    return screen


def rows(log: LogTail) -> list[str]:
    return [strip.text.rstrip() for strip in log.lines]


def log_title_of(screen: RunScreen) -> str:
    return str(screen.query_one("#log-box").border_title)


def start_dpo(run) -> None:
    """What the supervisor does when sft's gate is approved: dpo starts and writes its log."""
    with RunStore(run.db) as store:
        store.update_stage("sft", status="passed")
        store.update_stage("dpo", status="running", attempt=1, started_at=T0 + 300)
        store.append("stage_started", stage="dpo", now=True, attempt=1, total_steps=30)
    log = run.stage_log("dpo")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("[info] dpo building model and data\n")


@pytest.mark.parametrize("size", [(120, 40), (80, 24)])
async def test_metric_lines_aligned_and_long_lines_wrap_without_scrollbar(gate_run, size):
    app = make_app(gate_run)
    async with app.run_test(size=size) as pilot:
        screen = await at_run_screen(pilot)
        log = screen.query_one(LogTail)
        with gate_run.stage_log("sft").open("a") as fh:
            fh.write(f"{SFT_LINE}\n{SFT_LINE_2}\n{PEFT_WARNING}\n  warnings.warn(\n{'x' * 300}\n")
        await wait_until(pilot, lambda: rows(log)[-1].startswith("x"))
        drawn, width = rows(log), log.scrollable_content_region.width
        first = next(i for i, row in enumerate(drawn) if row.startswith("loss 6.16"))
        second = next(i for i, row in enumerate(drawn) if row.startswith("loss 5.999"))
        keys = drawn[first].split()[::2]
        assert [drawn[first].index(k) for k in keys] == [drawn[second].index(k) for k in keys]  # same columns
        assert drawn[second - 1].endswith("epoch 0.8333")  # the first line, all of it, just above
        assert not any("warnings.warn" in row for row in drawn)
        assert sum(row.startswith("x") for row in drawn) == -(-300 // width)  # wrapped, nothing cut
        assert not log.show_horizontal_scrollbar and log.virtual_size.width <= width
        events = screen.query_one(EventList)
        assert not events.show_horizontal_scrollbar
        assert events.virtual_size.width <= events.scrollable_content_region.width


async def test_log_follows_the_running_stage_into_the_next_one(gate_run):
    app = make_app(gate_run)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await at_run_screen(pilot)
        log = screen.query_one(LogTail)
        assert log.stage == "sft" and log_title_of(screen) == "Log · sft · following"
        start_dpo(gate_run)
        await wait_until(pilot, lambda: log.stage == "dpo" and log.line_count == 1)
        assert rows(log) == ["dpo building model and data"]
        assert log_title_of(screen) == "Log · dpo · following"


async def test_pin_keeps_the_chosen_stage_and_f_follows_again(gate_run):
    app = make_app(gate_run)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await at_run_screen(pilot)
        log = screen.query_one(LogTail)
        assert "Pin/follow log" in str(screen.active_bindings["f"].binding.description)
        screen.query_one(CurriculumPanel).focus()
        await pilot.press("k")  # up to pretrain: the log shows it and stays there
        await wait_until(pilot, lambda: log.stage == "pretrain" and log.line_count > 5)
        assert log_title_of(screen) == "Log · pretrain · pinned"
        start_dpo(gate_run)
        await wait_until(pilot, lambda: screen.snapshot.stage_named("dpo").status == "running")
        assert log.stage == "pretrain" and log_title_of(screen) == "Log · pretrain · pinned"
        await pilot.press("f")
        await wait_until(pilot, lambda: log.stage == "dpo")
        assert log_title_of(screen) == "Log · dpo · following"
        await pilot.press("f")  # pins the stage shown now
        assert log_title_of(screen) == "Log · dpo · pinned" and screen.follow == "dpo"


async def test_event_cursor_moves_by_event_and_enter_shows_the_event_whole(gate_run):
    app = make_app(gate_run)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await at_run_screen(pilot)
        events = screen.query_one(EventList)
        await wait_until(pilot, lambda: len(events.kept) > 5 and len(events.starts) == len(events.kept))
        events.focus()
        await pilot.pause()
        cursor = events.get_component_rich_style("event-list--cursor", partial=True).bgcolor
        marked = [y for y in range(events.scrollable_content_region.height)
                  if all(seg.style.bgcolor == cursor for seg in events.render_line(y))]
        newest = events._span(len(events.kept) - 1)
        assert marked == [r - events.scroll_offset.y for r in range(*newest)] and events.cursor is None  # follows
        await pilot.press("up", "up", "up")
        assert events.cursor == len(events.kept) - 4 and not events.auto_scroll
        first, end = events._span(events.cursor)
        assert events.scroll_offset.y <= first < end <= events.scroll_offset.y + events.scrollable_content_region.height
        head, body, event_id = events.kept[events.cursor]
        await pilot.press("enter")
        await wait_until(pilot, lambda: type(pilot.app.screen).__name__ == "EventDetailScreen")
        text = str(pilot.app.screen.query_one("#event-text").render())
        assert body.plain.split()[0] in text and f"event {event_id} ·" in str(
            pilot.app.screen.query_one("#event-dialog").border_title)
        await pilot.press("escape")
        await pilot.press("end")
        assert events.cursor is None and events.auto_scroll
        with RunStore(gate_run.db) as store:  # a new event while following: the view and the cursor go to it
            store.append("log", stage="sft", now=True, level="warning", message="a fresh warning")
        await wait_until(pilot, lambda: "a fresh warning" in events.kept[-1][1].plain)
        await wait_until(pilot, lambda: events.scroll_offset.y == events.max_scroll_y)
