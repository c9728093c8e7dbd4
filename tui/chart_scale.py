"""The chart's arithmetic, free of Textual: smoothing, y axes (robust, log, per stage), ticks and labels."""
from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass
from typing import Callable

from rich.markup import escape

from core.run_state import StageView, Threshold
from tui.format import short_number
from tui.series import SeriesView

EMA_WEIGHT = 0.8     # TensorBoard-style smoothing weight, debiased, restarted at each stage
BAND = (0.05, 0.95)  # a robust y range starts from these quantiles of the shown values...
REACH = 0.5          # ...and reaches this share of the band's width past them before it cuts a spike
MIN_ROBUST_POINTS = 8
PAD = 0.05           # room above and below the values
PART_COLOURS = ("$success", "$warning", "$secondary", "$error")  # reward parts, as chart--part-1..4 draw them
DPO_REWARDS = frozenset({"chosen", "rejected", "margins", "accuracies"})  # DPO's implicit rewards: unbounded


@dataclass(frozen=True)
class ChartOptions:
    """How the chart draws: smoothed (raw points stay, faint), log y, one y axis per stage."""

    smooth: bool = False
    log: bool = False
    per_stage: bool = True


@dataclass(frozen=True)
class ChartData:
    """What the chart draws: one series, the stages along x, the metric's gate bounds, its reward parts."""

    metric: str
    series: SeriesView | None
    stages: tuple[StageView, ...]
    thresholds: tuple[Threshold, ...]
    parts: tuple[SeriesView, ...] = ()  # one series per reward function, drawn with `reward`


@dataclass(frozen=True)
class YAxis:
    """A y range in value space; `frac` places a value on it (0 bottom, 1 top, clamped)."""

    lo: float
    hi: float
    log: bool = False
    clipped: bool = False  # spikes lie outside it

    def frac(self, v: float) -> float:
        a, b, t = _t(self.lo, self.log), _t(self.hi, self.log), _t(v, self.log)
        return min(max((t - a) / ((b - a) or 1.0), 0.0), 1.0)

    def ticks(self, count: int) -> tuple[list[float], Callable[[float], str]]:
        """At most about `count` round values inside the axis and one format for all their labels."""
        if self.log:
            ticks = self._log_ticks(count)
            if ticks:
                return ticks
        step = nice_step(self.hi - self.lo, count)
        first = math.ceil(self.lo / step - 1e-9)
        ticks = [round(k * step, 12) for k in range(first, math.floor(self.hi / step + 1e-9) + 1)]
        return ticks, number_format(ticks, step)


    def _log_ticks(self, count: int) -> tuple[list[float], Callable[[float], str]] | None:
        """Powers of ten when the axis spans several, else 1-2-5 steps; None when fewer than two fit."""
        k0, k1 = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
        decades = [10.0 ** k for k in range(k0, k1 + 1) if self.lo <= 10.0 ** k <= self.hi]
        if len(decades) >= 3:
            shown = decades[::math.ceil(len(decades) / max(count, 2))]
            return shown, decade_format(shown)
        ticks = [m * 10.0 ** k for k in range(k0, k1 + 1) for m in (1, 2, 5) if self.lo <= m * 10.0 ** k <= self.hi]
        if len(ticks) < 2:
            return None
        return ticks[::math.ceil(len(ticks) / max(count, 2))], number_format(ticks, ticks[0])


@dataclass(frozen=True)
class ChartPlan:
    """The y axis of each stage, the smoothed values and what the caption should say."""

    axes: tuple[YAxis, ...]
    smoothed: tuple[float, ...] | None
    log: bool          # log y is in effect
    log_refused: bool  # asked for, but some value is not positive
    per_stage: bool    # each stage has its own y axis

    @property
    def clipped(self) -> bool:
        return any(a.clipped for a in self.axes)


def _t(v: float, log: bool) -> float:
    if not log:
        return v
    return math.log10(v) if v > 0 else -math.inf


# -- metric families ---------------------------------------------------------------------------
def is_eval(metric: str) -> bool:
    return metric.startswith("eval/")


def reward_part(name: str) -> str | None:
    """The reward function a TRL metric reports (`rewards/<f>/mean`, older `rewards/<f>`), else None."""
    bits = name.split("/")
    if bits[0] != "rewards" or len(bits) not in (2, 3) or bits[1] in DPO_REWARDS:
        return None
    return bits[1] if len(bits) == 2 or bits[2] == "mean" else None


def is_reward(metric: str) -> bool:
    return metric == "reward" or reward_part(metric) is not None


def reward_bounds(metric: str, parts: int) -> tuple[float, float] | None:
    """The possible range of a reward: each function's in [0, 1], `reward` their sum (weights of one)."""
    if metric == "reward":
        return 0.0, float(max(parts, 1))
    return (0.0, 1.0) if reward_part(metric) else None


# -- smoothing and ranges ----------------------------------------------------------------------
def stage_of(x: float, ends: list[float]) -> int:
    """The stage whose span holds timeline position `x` (a stage's last step belongs to it)."""
    return min(bisect_left(ends, x), len(ends) - 1) if ends else 0


def ema(ys: tuple[float, ...], stages: list[int], weight: float = EMA_WEIGHT) -> tuple[float, ...]:
    """Debiased exponential moving average (as TensorBoard draws it), restarted where the stage changes."""
    out, acc, n = [], 0.0, 0
    for i, y in enumerate(ys):
        if i and stages[i] != stages[i - 1]:
            acc, n = 0.0, 0
        if y == y:
            acc, n = acc * weight + (1 - weight) * y, n + 1
        out.append(acc / (1 - weight ** n) if n else y)
    return tuple(out)


def quantile(ordered: list[float], q: float) -> float:
    pos = q * (len(ordered) - 1)
    i = int(pos)
    return ordered[i] + (ordered[min(i + 1, len(ordered) - 1)] - ordered[i]) * (pos - i)


def value_span(values: list[float], robust: bool) -> tuple[float, float]:
    """min..max; robust: a spike past the 5–95 % band by more than half the band's width is cut off."""
    ordered = sorted(values)
    lo, hi = ordered[0], ordered[-1]
    if robust and len(ordered) >= MIN_ROBUST_POINTS:
        q0, q1 = quantile(ordered, BAND[0]), quantile(ordered, BAND[1])
        reach = (q1 - q0) * REACH
        lo, hi = max(lo, q0 - reach), min(hi, q1 + reach)
    return lo, hi


def linear_range(values, extra=(), robust: bool = False) -> tuple[float, float]:
    """The values (and gate bounds `extra`) with 5 % room; never below zero for a series that never is."""
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = value_span(finite, robust) if finite else (min(extra, default=0.0), max(extra, default=1.0))
    lo, hi = min([lo, *extra]), max([hi, *extra])
    pad = (hi - lo) * PAD or abs(hi) * PAD or 1.0
    never_negative = min([*finite, *extra], default=0.0) >= 0
    return (0.0 if never_negative and lo - pad < 0 else lo - pad), hi + pad


def y_axis(values, extra=(), log: bool = False, bounds: tuple[float, float] | None = None) -> YAxis:
    """One y axis: a log one over the positive values, the possible range of a reward, else a robust range."""
    finite = [v for v in values if math.isfinite(v)]
    if log and (finite or extra):
        a, b = math.log10(min([*finite, *extra])), math.log10(max([*finite, *extra]))
        pad = (b - a) * PAD or 0.5
        return YAxis(10 ** (a - pad), 10 ** (b + pad), log=True)
    if bounds is not None and all(bounds[0] <= v <= bounds[1] for v in [*finite, *extra]):
        return YAxis(*bounds)
    lo, hi = linear_range(finite, extra, robust=bounds is None)
    full = linear_range(finite, extra)
    return YAxis(lo, hi, clipped=(lo, hi) != full)


def plan_chart(data: ChartData, options: ChartOptions) -> ChartPlan:
    """The axes for `data` drawn with `options`: eval metrics and rewards always share one axis."""
    ys = data.series.ys if data.series else ()
    stages = [stage_of(x, [s.x1 for s in data.stages]) for x in (data.series.xs if data.series else ())]
    smoothed = ema(ys, stages) if options.smooth and not is_eval(data.metric) else None
    every = [v for v in ys if math.isfinite(v)] + [v for p in data.parts for v in p.ys if math.isfinite(v)]
    gates = [t.value for t in data.thresholds]
    log_refused = options.log and any(v <= 0 for v in every + gates)
    log = options.log and not log_refused and bool(every)
    bounds = reward_bounds(data.metric, len(data.parts))
    if not options.per_stage or is_eval(data.metric) or bounds is not None:
        axis = y_axis(every, gates, log, bounds)
        return ChartPlan((axis,) * max(len(data.stages), 1), smoothed, log, log_refused, False)
    return ChartPlan(_stage_axes(data, ys, stages, log), smoothed, log, log_refused, True)


def _stage_axes(data: ChartData, ys: tuple[float, ...], stages: list[int], log: bool) -> tuple[YAxis, ...]:
    """One axis per stage, over its own points and gate bounds."""
    axes = []
    for i, stage in enumerate(data.stages or (None,)):
        own = [y for y, s in zip(ys, stages) if s == i]
        extra = [t.value for t in data.thresholds if stage is None or t.stage == stage.name]
        axes.append(y_axis(own, extra, log) if own or extra else YAxis(0.0, 1.0))
    return tuple(axes)


# -- ticks and number formats ------------------------------------------------------------------
def nice_step(span: float, count: int, at_most: bool = False) -> float:
    """1, 2 or 5 times a power of ten, so that `span` holds about `count` steps (`at_most`: no more)."""
    raw = (span or 1.0) / max(count, 1)
    mag = 10.0 ** math.floor(math.log10(raw))
    if at_most:
        return next(m * mag for m in (1, 2, 5, 10) if raw <= m * mag * (1 + 1e-9))
    return min((m * mag for m in (1, 2, 5, 10)), key=lambda step: abs(math.log(step / raw)))


def _decimals(step: float) -> int:
    return min(max(-math.floor(math.log10(step) + 1e-9), 0), 4)


def number_format(values: list[float], step: float) -> Callable[[float], str]:
    """One format for every label of an axis: fixed decimals, k/M suffixes, or one shared exponent."""
    top = max((abs(v) for v in values), default=0.0)
    if top >= 1e4:
        unit, suffix = (1e6, "M") if top >= 1e6 else (1e3, "k")
        d = _decimals(step / unit)
        return lambda v: f"{v / unit:.{d}f}{suffix}" if v else "0"
    if 0 < top < 1e-2:
        exp = math.floor(math.log10(top))
        d = _decimals(step / 10.0 ** exp)
        return lambda v: f"{v / 10.0 ** exp:.{d}f}e{exp}" if v else "0"
    d = _decimals(step)
    return lambda v: f"{v:.{d}f}"


def decade_format(decades: list[float]) -> Callable[[float], str]:
    """Powers of ten, all plain when they lie between 0.01 and 1000, else all as 1e-4."""
    if all(1e-2 <= v < 1e4 for v in decades):
        return lambda v: f"{v:g}"
    return lambda v: f"1e{round(math.log10(v))}"


def step_ticks(total: float, cols: int) -> tuple[list[int], Callable[[float], str]]:
    """Round step numbers inside a stage of `total` steps drawn `cols` wide, spaced so their labels fit."""
    width = len(str(int(total))) + 2
    count = cols // (width + 1)
    if total < 2 or count < 1:
        return [], str
    step = max(nice_step(total, count, at_most=True), 1.0)
    ticks = [int(k * step) for k in range(1, int(total // step) + 1)]
    return ticks, number_format(ticks, step) if total >= 1e4 else (lambda v: str(int(v)))


# -- the readout ---------------------------------------------------------------------------------
def nearest(xs: tuple[float, ...], x: float) -> int:
    i = bisect_left(xs, x)
    if i == len(xs) or (i and x - xs[i - 1] <= xs[i] - x):
        return max(i - 1, 0)
    return i


def place(data: ChartData, x: float) -> str:
    """Where timeline position `x` is, in a practitioner's words: `sft step 350`, `after sft`."""
    if not data.stages:
        return f"step {x:g}"
    stage = data.stages[stage_of(x, [s.x1 for s in data.stages])]
    if is_eval(data.metric):
        return f"after {stage.name}"
    return f"{stage.name} step {round(x - stage.x0)}"


def chart_title(label: str, data: ChartData, plan: ChartPlan, cursor_x: float | None,
                running: StageView | None) -> str:
    """`Metrics · loss = 0.29 · sft step 600`; at the cursor `Metrics · loss · sft step 350: 0.41`; a
    running stage without a point of its own yet says so rather than showing the last stage's value."""
    head, series = f"Metrics · {label}", data.series
    if not series or not series.xs:
        return head
    i = nearest(series.xs, cursor_x) if cursor_x is not None else _newest(data, running)
    x = series.xs[i]
    value = short_number(series.ys[i])
    if plan.smoothed:
        value += f" (EMA {short_number(plan.smoothed[i])})"
    value += "".join(_part_words(k, part, x) for k, part in enumerate(data.parts))
    if cursor_x is not None:
        return f"{head} · {place(data, x)}: {value}"
    shown = data.stages[stage_of(x, [s.x1 for s in data.stages])].name if data.stages else None
    if running is not None and not is_eval(data.metric) and shown != running.name:
        return f"{head} · {escape(running.name)}: none yet · {place(data, x)}: {value}"
    return f"{head} = {value} · {place(data, x)}"


def _newest(data: ChartData, running: StageView | None) -> int:
    """The index of the running stage's newest point (stages running at once each have their own), else the
    timeline's last."""
    span = next((s for s in data.stages if running is not None and s.name == running.name), None)
    own = [i for i, x in enumerate(data.series.xs) if span is not None and span.x0 < x <= span.x1]
    return own[-1] if own else len(data.series.xs) - 1


def _part_words(k: int, part: SeriesView, x: float) -> str:
    if not part.xs:
        return ""
    name = escape(reward_part(part.name) or part.name)
    return f" · [{PART_COLOURS[k % len(PART_COLOURS)]}]{name} {short_number(part.ys[nearest(part.xs, x)])}[/]"


def chart_caption(options: ChartOptions, plan: ChartPlan, cursor: bool, zoomed: bool = False) -> str:
    """The chart's keys with their state (bright when on), and what the drawing leaves out."""
    words = [_key("e", "EMA", options.smooth), _key("l", "log", plan.log),
             _key("y", "scale per stage" if plan.per_stage else "scale shared", plan.per_stage),
             _key("x", "cursor", cursor), _key("z", "zoom", zoomed)]
    if plan.log_refused:
        words.append("[$warning]log needs values > 0[/]")
    if plan.clipped:
        words.append("[$warning]spikes cut[/]")
    return " · ".join(words)


def _key(key: str, words: str, on: bool) -> str:
    return f"[b]{key}[/] [b $accent]{words}[/]" if on else f"[b]{key}[/] [$text-muted]{words}[/]"
