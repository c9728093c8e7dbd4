"""The run screen's chart: its arithmetic (smoothing, axes, ticks, formats, readout) and its keys."""
import math

import pytest
from textual.app import App

from core.run_state import StageView, Threshold
from recorded import T0, FakeClock, build_recorded_run, wait_until
from tui.app import CockpitApp
from tui.chart_scale import (ChartData, ChartOptions, YAxis, chart_caption, chart_title, ema, number_format,
                             plan_chart, reward_part, step_ticks, y_axis)
from tui.screens.run import RunScreen
from tui.series import SeriesView
from tui.widgets.chart import MetricChart


def stage(idx, name, x0, x1, status="passed"):
    return StageView(idx, name, name, None, status, 1, int(x1 - x0), int(x1 - x0), None, None, x0, x1, None)


STAGES = (stage(0, "sft", 0, 100), stage(1, "dpo", 100, 130), stage(2, "grpo", 130, 150))


def losses() -> SeriesView:
    """SFT cross-entropy near 2, DPO near 0.69, GRPO near 6e-4: three scales on one timeline."""
    xs = [float(x) for x in range(10, 101, 10)] + [float(x) for x in range(105, 131, 5)] + [140.0, 150.0]
    ys = [2.4 - 0.05 * i for i in range(10)] + [0.69 - 0.01 * i for i in range(6)] + [6e-4, 5e-4]
    return SeriesView("loss", tuple(xs), tuple(ys))


# -- arithmetic ---------------------------------------------------------------------------------
def test_ema_is_debiased_and_restarts_at_each_stage():
    assert ema((2.0, 2.0, 2.0), [0, 0, 0]) == pytest.approx((2.0, 2.0, 2.0))  # no pull towards zero
    smoothed = ema((0.0, 10.0, 0.6, 0.6), [0, 0, 1, 1])
    assert 0 < smoothed[1] < 10  # smoothed inside a stage
    assert smoothed[2:] == pytest.approx((0.6, 0.6))  # the next stage does not inherit the last one's level


def test_a_warmup_spike_is_cut_from_the_range_but_a_trend_is_not():
    spiky = [12.0, 6.0] + [1.0 + 0.01 * i for i in range(60)]
    axis = y_axis(spiky)
    assert axis.hi < 3 and axis.clipped
    trend = [0.9 + 4.7 * math.exp(-4 * i / 80) for i in range(80)]  # a loss that falls over a quarter of the run
    assert not y_axis(trend).clipped and y_axis(trend).hi > max(trend)
    assert y_axis([0.02, 1.5, 0.4] * 5).lo == 0.0  # a loss near zero: never a negative axis


def test_each_stage_gets_its_own_axis_or_all_share_one():
    data = ChartData("loss", losses(), STAGES, ())
    sft, dpo, grpo = plan_chart(data, ChartOptions()).axes
    assert sft.hi > 2.4 and dpo.hi < 0.75 and grpo.hi < 1e-3  # each curve fills its own height
    shared = plan_chart(data, ChartOptions(per_stage=False))
    def grpo_change(axis):  # how much of the height GRPO's 6e-4 -> 5e-4 moves
        return axis.frac(6e-4) - axis.frac(5e-4)
    assert len(set(shared.axes)) == 1 and grpo_change(shared.axes[0]) < 1e-3  # flat: why per stage is the default
    assert grpo_change(grpo) > 0.3
    logged = plan_chart(data, ChartOptions(log=True, per_stage=False))
    assert logged.log and grpo_change(logged.axes[0]) > 0.01  # log y on one axis: the change is visible


def test_log_is_refused_for_values_at_or_below_zero():
    margins = ChartData("rewards/margins", SeriesView("rewards/margins", (1.0, 2.0), (-0.2, 0.4)), STAGES[:1], ())
    plan = plan_chart(margins, ChartOptions(log=True))
    assert plan.log_refused and not plan.log
    assert "log needs values > 0" in chart_caption(ChartOptions(log=True), plan, cursor=False)


def test_rewards_are_drawn_on_their_possible_range_and_split_by_function():
    assert [reward_part(n) for n in ("rewards/exact_match/mean", "rewards/format", "rewards/format/std",
                                     "rewards/margins", "reward")] == ["exact_match", "format", None, None, None]
    parts = tuple(SeriesView(f"rewards/{f}/mean", (140.0, 150.0), (0.5, 0.9)) for f in ("exact_match", "format"))
    total = SeriesView("reward", (140.0, 150.0), (1.0, 1.7))
    plan = plan_chart(ChartData("reward", total, STAGES, (), parts), ChartOptions())
    assert set(plan.axes) == {YAxis(0.0, 2.0)}  # two functions in [0, 1]: the sum lies in [0, 2]


def test_gate_bounds_stay_inside_their_stage_axis():
    bound = Threshold("loss", "dpo", "max", 0.9, 100, 130)
    dpo = plan_chart(ChartData("loss", losses(), STAGES, (bound,)), ChartOptions()).axes[1]
    assert dpo.lo < 0.9 < dpo.hi


@pytest.mark.parametrize("values, step, labels", [
    ([0.0, 0.5, 1.0, 1.5], 0.5, ["0.0", "0.5", "1.0", "1.5"]),
    ([0.0, 10000.0, 20000.0], 10000.0, ["0", "10k", "20k"]),
    ([1.5e6, 2.0e6, 2.5e6], 5e5, ["1.5M", "2.0M", "2.5M"]),
    ([2e-4, 4e-4, 6e-4], 2e-4, ["2e-4", "4e-4", "6e-4"]),
    ([0.02, 0.04, 0.06], 0.02, ["0.02", "0.04", "0.06"]),
])
def test_one_number_format_per_axis(values, step, labels):
    fmt = number_format(values, step)
    assert [fmt(v) for v in values] == labels


def test_y_ticks_are_round_and_log_ticks_are_powers_of_ten():
    ticks, fmt = YAxis(0.03, 2.6).ticks(4)
    assert [fmt(t) for t in ticks] == ["0.5", "1.0", "1.5", "2.0", "2.5"]
    ticks, fmt = YAxis(2e-4, 3.0, log=True).ticks(6)
    assert [fmt(t) for t in ticks] == ["1e-3", "1e-2", "1e-1", "1e0"]  # one format, not 1e-3 next to 0.01
    ticks, fmt = YAxis(0.02, 300.0, log=True).ticks(6)
    assert [fmt(t) for t in ticks] == ["0.1", "1", "10", "100"]
    ticks, fmt = YAxis(1e-7, 10.0, log=True).ticks(6)
    assert [fmt(t) for t in ticks] == ["1e-7", "1e-5", "1e-3", "1e-1", "1e1"]  # thinned to fit


def test_step_ticks_fit_their_stage():
    assert step_ticks(800, 40)[0] == [200, 400, 600, 800]
    assert step_ticks(20, 3)[0] == []  # no room: the stage name alone
    ticks, fmt = step_ticks(30000, 60)
    assert [fmt(t) for t in ticks][:2] == ["5k", "10k"]


def test_the_readout_names_the_step_and_never_passes_off_an_old_stage_value():
    data = ChartData("loss", losses(), STAGES, ())
    plan = plan_chart(data, ChartOptions(smooth=True))
    assert chart_title("loss", data, plan, None, None).startswith("Metrics · loss = 5.0e-04 (EMA ")
    assert chart_title("loss", data, plan, None, None).endswith("· grpo step 20")
    assert chart_title("loss", data, plan, 52.0, None).startswith("Metrics · loss · sft step 50: 2.2 (EMA ")
    before = ChartData("loss", SeriesView("loss", losses().xs[:-2], losses().ys[:-2]), STAGES, ())
    running = stage(2, "grpo", 130, 150, status="running")
    title = chart_title("loss", before, plan_chart(before, ChartOptions()), None, running)
    assert title == "Metrics · loss · grpo: none yet · dpo step 30: 0.64"
    side_by_side = stage(1, "dpo", 100, 130, status="running"), stage(2, "grpo", 130, 150, status="running")
    interleaved = ChartData("loss", SeriesView("loss", (110.0, 140.0, 120.0), (0.7, 6e-4, 0.6)), STAGES, ())
    for running, words in zip(side_by_side, ("= 0.6 · dpo step 20", "= 6.0e-04 · grpo step 10")):
        assert chart_title("loss", interleaved, plan_chart(interleaved, ChartOptions()), None, running).endswith(words)


# -- the widget and the run screen --------------------------------------------------------------
def chart_text(chart: MetricChart) -> list[str]:
    return ["".join(seg.text for seg in chart.render_line(y)) for y in range(chart.size.height)]


class ChartApp(App):
    def __init__(self, data: ChartData):
        super().__init__()
        self.data = data

    def compose(self):
        yield MetricChart()

    def on_mount(self):
        self.query_one(MetricChart).show(self.data)


async def test_each_reward_function_is_its_own_line_under_the_total():
    parts = tuple(SeriesView(f"rewards/{f}/mean", (135.0, 140.0, 150.0), (0.2, 0.5, 0.9)) for f in ("em", "fmt"))
    total = SeriesView("reward", (135.0, 140.0, 150.0), (0.4, 1.0, 1.8))
    app = ChartApp(ChartData("reward", total, STAGES, (), parts))
    async with app.run_test(size=(80, 14)) as pilot:
        await pilot.pause()
        chart = app.query_one(MetricChart)
        lines = chart_text(chart)
        assert lines[0].strip().startswith("2.0┤") and "0.0┤" in lines[-2]
        styles = {seg.style for y in range(chart.size.height) for seg in chart.render_line(y)}
        assert chart.get_component_rich_style("chart--part-1") in styles  # em: a line of its own colour
        assert "em 0.9" in chart.title("reward", None) and "fmt 0.9" in chart.title("reward", None)


async def test_a_context_phase_is_a_boundary_named_by_its_length():
    phased = (StageView(0, "pretrain", "pretrain", None, "passed", 1, 100, 100, None, None, 0.0, 100.0, None,
                        phases=((0, 512), (60, 1024))),)
    app = ChartApp(ChartData("loss", SeriesView("loss", (10.0, 50.0, 90.0), (2.0, 1.5, 1.2)), phased, ()))
    async with app.run_test(size=(80, 14)) as pilot:
        await pilot.pause()
        chart = app.query_one(MetricChart)
        lines = chart_text(chart)
        col = lines[-1].index("└1024")  # the x axis names the phase at its first step (60), over that tick
        assert "└pretrain" in lines[-1] and " 50 " in lines[-1] and " 60 " not in lines[-1]
        assert sum(line[col] == "┊" for line in lines[:-1]) >= len(lines) // 2  # the boundary, where no curve is


@pytest.fixture
def finished_run(tmp_path):
    return build_recorded_run(tmp_path / "runs", "finished", run_id="20231114-000000-demo")


async def test_chart_keys_smooth_log_scale_and_cursor(finished_run):
    app = CockpitApp(finished_run.root.parent, finished_run, clock=FakeClock(T0 + 200), user="alice", blink=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.applied_count)
        box, chart = app.screen.query_one("#chart-box"), app.screen.query_one(MetricChart)
        raw = chart_text(chart)
        assert raw[-1].strip().startswith("y:grpo") and "└sft 100" in raw[-1]  # per-stage axis, step ticks
        assert str(box.border_title) == "Metrics · loss = 0.2861 · grpo step 20"

        await pilot.press("e")
        smoothed = chart_text(chart)
        assert chart.options.smooth and smoothed != raw and "(EMA " in str(box.border_title)

        await pilot.press("l")
        assert chart.plan.log and chart_text(chart) != smoothed

        await pilot.press("e", "l", "y")  # back to raw, linear, one axis for every stage
        shared = chart_text(chart)
        assert not chart.plan.per_stage and shared != raw and shared[-1].startswith("         └pretrain")
        assert "scale shared" in str(box.border_subtitle)

        await pilot.press("x", "left")
        assert chart.has_focus and str(box.border_title) == "Metrics · loss · grpo step 18: 0.2808"
        assert "◆" in "".join(chart_text(chart))
        await pilot.press("x")
        assert not chart.has_focus and str(box.border_title).startswith("Metrics · loss = ")


async def test_gate_thresholds_are_labelled(finished_run):
    app = CockpitApp(finished_run.root.parent, finished_run, clock=FakeClock(T0 + 200), user="alice", blink=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.applied_count)
        screen = app.screen
        await pilot.press(str(screen.metric_names().index("eval/accuracy") + 1))
        text = "".join(chart_text(screen.query_one(MetricChart)))
        assert "gate ≥0.9" in text and "●" in text
