"""A line chart of one metric along the whole curriculum, drawn in braille by one widget."""
from __future__ import annotations

import dataclasses
from itertools import groupby
from operator import itemgetter

from rich.segment import Segment
from textual.binding import Binding
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from core.run_state import StageView
from tui.chart_scale import (ChartData, ChartOptions, ChartPlan, YAxis, chart_caption, chart_title, is_eval, nearest,
                             plan_chart, stage_of, step_ticks)

AXIS_W = 9
BRAILLE = 0x2800
MIN_STAGE_SHARE = 0.1  # of the curriculum's steps: short stages stay visible
MAX_Y_TICKS = 6
DOT_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # [row][col] inside one cell
PARTS = ("chart--part-1", "chart--part-2", "chart--part-3", "chart--part-4")
LAYERS = ("chart--line", *PARTS, "chart--raw")  # braille layers, the first one present in a cell wins
ON_TOP = frozenset({"chart--marker", "chart--cursor", "chart--gate-label"})  # overlays drawn over the curve


class MetricChart(Widget, can_focus=True):
    """Braille line chart with stage boundaries, step ticks, gate thresholds and a step cursor (when focused)."""

    DEFAULT_CSS = """
    MetricChart { height: 1fr; min-height: 5; }
    MetricChart > .chart--line { color: $accent; }
    MetricChart > .chart--raw { color: $accent 40%; }
    MetricChart > .chart--part-1 { color: $success; }
    MetricChart > .chart--part-2 { color: $warning; }
    MetricChart > .chart--part-3 { color: $secondary; }
    MetricChart > .chart--part-4 { color: $error; }
    MetricChart > .chart--marker { color: $warning; text-style: bold; }
    MetricChart > .chart--cursor { color: $foreground; text-style: bold; }
    MetricChart > .chart--boundary { color: $foreground 30%; }
    MetricChart > .chart--threshold { color: $error; }
    MetricChart > .chart--gate-label { color: $error; text-style: bold; }
    MetricChart > .chart--axis { color: $foreground 60%; }
    MetricChart > .chart--label { color: $secondary; }
    """
    COMPONENT_CLASSES = {*LAYERS, "chart--marker", "chart--cursor", "chart--boundary", "chart--threshold",
                         "chart--gate-label", "chart--axis", "chart--label"}
    BINDINGS = [
        Binding("left", "move(-1)", "Step back", key_display="←"),
        Binding("right", "move(1)", "Step on", key_display="→"),
        Binding("shift+left", "move(-10)", "10 back", show=False),
        Binding("shift+right", "move(10)", "10 on", show=False),
        Binding("home", "move(-1e9)", "First", show=False),
        Binding("end", "move(1e9)", "Last", show=False),
    ]

    class ViewChanged(Message):
        """The cursor or the drawing options changed: the readout above the chart is stale."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.data: ChartData | None = None
        self.options = ChartOptions()
        self.plan: ChartPlan | None = None
        self.cursor_x: float | None = None  # a timeline position while the chart has focus
        self._lines: list[Strip] = []
        self._drawn_for: tuple = ()
        self._version = 0

    def show(self, data: ChartData) -> None:
        """New data to draw; only refreshes when something actually changed."""
        if data != self.data:
            self.data = data
            self._replan()

    def toggle(self, option: str) -> None:
        """Flip one drawing option: `smooth`, `log` or `per_stage`."""
        self.options = dataclasses.replace(self.options, **{option: not getattr(self.options, option)})
        self._replan()
        self.post_message(self.ViewChanged())

    def _replan(self) -> None:
        self.plan = plan_chart(self.data, self.options) if self.data else None
        self._version += 1
        self.refresh()

    def title(self, label: str, running: StageView | None) -> str:
        """The readout above the chart: the newest value and where it is, or the cursor's."""
        if self.data is None or self.plan is None:
            return f"Metrics · {label}"
        return chart_title(label, self.data, self.plan, self.cursor_x, running)

    def caption(self, zoomed: bool = False) -> str:
        """The chart's keys and their state, for the border under it."""
        return chart_caption(self.options, self.plan, self.cursor_x is not None, zoomed) if self.plan else ""

    # -- the step cursor ----------------------------------------------------------------------
    def on_focus(self) -> None:
        xs = self._xs()
        self._set_cursor(xs[-1] if xs else None)

    def on_blur(self) -> None:
        self._set_cursor(None)

    def action_move(self, points: float) -> None:
        xs = self._xs()
        if xs:
            i = nearest(xs, self.cursor_x) if self.cursor_x is not None else len(xs) - 1
            self._set_cursor(xs[min(max(i + int(points), 0), len(xs) - 1)])

    def _xs(self) -> tuple[float, ...]:
        series = self.data.series if self.data else None
        return series.xs if series else ()

    def _set_cursor(self, x: float | None) -> None:
        if x != self.cursor_x:
            self.cursor_x = x
            self._version += 1
            self.refresh()
            self.post_message(self.ViewChanged())

    def render_line(self, y: int) -> Strip:
        key = (self.size.width, self.size.height, self._version)
        if key != self._drawn_for:
            self._lines = self._draw(self.size.width, self.size.height)
            self._drawn_for = key
        return self._lines[y] if y < len(self._lines) else Strip.blank(self.size.width)

    # -- drawing ------------------------------------------------------------------------------
    def _draw(self, width: int, height: int) -> list[Strip]:
        data, plan = self.data, self.plan
        if data is None or plan is None or width <= AXIS_W + 4 or height < 3:
            return []
        canvas = _Canvas(width - AXIS_W, height - 1)
        scale = _Scale(canvas, data.stages, plan.axes)
        if not (data.series and data.series.xs):
            return self._frame(canvas, data, scale, None, f"no {data.metric} yet")
        self._plot(canvas, scale, data, plan)
        return self._frame(canvas, data, scale, self._axis_stage(data, scale), None)

    def _axis_stage(self, data: ChartData, scale: "_Scale") -> int:
        """The stage whose y axis the labels show: the cursor's, else the newest point's."""
        xs = data.series.xs
        return scale.stage_of(self.cursor_x if self.cursor_x is not None else xs[-1])

    def _plot(self, canvas: "_Canvas", scale: "_Scale", data: ChartData, plan: ChartPlan) -> None:
        self._thresholds(canvas, scale, data)
        series = data.series
        if is_eval(data.metric):
            for x, y in zip(series.xs, series.ys):
                dx, dy = scale.dot(x, y)
                canvas.overlay[(dy // 4, min(dx // 2, canvas.cols - 1))] = ("●", "chart--marker")
        else:
            for k, part in enumerate(data.parts):
                _polyline(canvas, scale, part.xs, part.ys, PARTS[k % len(PARTS)])
            main = plan.smoothed or series.ys
            if plan.smoothed:
                _polyline(canvas, scale, series.xs, series.ys, "chart--raw")
            _polyline(canvas, scale, series.xs, main, "chart--line")
        if self.cursor_x is not None:
            self._cursor(canvas, scale, data, plan)

    def _thresholds(self, canvas: "_Canvas", scale: "_Scale", data: ChartData) -> None:
        """Each gate bound across its stage, labelled `gate ≥0.9` (or `≥0.9`) where it starts."""
        names = [s.name for s in data.stages]
        for t in data.thresholds:
            if t.stage not in names:
                continue
            i = names.index(t.stage)
            (c0, c1), row = scale.stage_cols(i), scale.row(i, t.value)
            canvas.hline(row, c0, c1, "chart--threshold")
            words = f"{'≥' if t.bound == 'min' else '≤'}{t.value:.3g}"
            for text in (f"gate {words}", words):
                if len(text) + 1 < c1 - c0:
                    canvas.text(row, c0 + 1, text, "chart--gate-label")
                    break

    def _cursor(self, canvas: "_Canvas", scale: "_Scale", data: ChartData, plan: ChartPlan) -> None:
        series = data.series
        i = nearest(series.xs, self.cursor_x)
        dx, dy = scale.dot(series.xs[i], (plan.smoothed or series.ys)[i])
        col = min(dx // 2, canvas.cols - 1)
        for r in range(canvas.rows):
            canvas.overlay[(r, col)] = ("│", "chart--boundary")
        canvas.overlay[(dy // 4, col)] = ("◆", "chart--cursor")

    def _frame(self, canvas: "_Canvas", data: ChartData, scale: "_Scale", axis_stage: int | None,
               message: str | None) -> list[Strip]:
        for i in range(1, len(data.stages)):
            canvas.vline(scale.stage_cols(i)[0], "chart--boundary")
        for stage in data.stages:  # a context phase begins: a boundary within the stage
            for step, _ in stage.phases[1:]:
                canvas.vline(min(scale.col(stage.x0 + step), canvas.cols - 1), "chart--boundary")
        styles = {k: self.get_component_rich_style(k) for k in self.COMPONENT_CLASSES}
        axis = styles["chart--axis"]
        labels = _y_labels(canvas.rows, scale, axis_stage) if axis_stage is not None else {}
        strips = []
        for r in range(canvas.rows):
            gutter = labels[r][: AXIS_W - 1].rjust(AXIS_W - 1) + "┤" if r in labels else " " * (AXIS_W - 1) + "│"
            strips.append(Strip([Segment(gutter, axis), *canvas.segments(r, styles)], self.size.width))
        if message:
            mid = canvas.rows // 2
            strips[mid] = Strip([Segment(" " * AXIS_W), Segment(message.center(canvas.cols), axis)], self.size.width)
        corner = _corner(data, axis_stage if self.plan.per_stage else None)
        strips.append(Strip([Segment(corner, axis), *self._x_axis(canvas.cols, data, scale, styles)], self.size.width))
        return strips

    def _x_axis(self, cols: int, data: ChartData, scale: "_Scale", styles) -> list[Segment]:
        """Stage names under the chart, each at its boundary, then round step numbers where they fit."""
        cells: list[tuple[str, str]] = [(" ", "chart--label")] * cols
        for i, stage in enumerate(data.stages):
            c0, c1 = scale.stage_cols(i)
            name = ("└" + stage.name)[: max(c1 - c0, 1)]
            cells[c0: c0 + len(name)] = [(ch, "chart--label") for ch in name]
            free = c0 + len(name) + 1
            ticks, fmt = step_ticks(stage.x1 - stage.x0, c1 - c0)
            for step in ticks:
                text = fmt(step)
                at = scale.col(stage.x0 + step) - len(text) // 2
                if at >= free and at + len(text) < min(c1, cols):
                    cells[at: at + len(text)] = [(ch, "chart--axis") for ch in text]
                    free = at + len(text) + 1
            for step, length in stage.phases[1:]:  # over the ticks: "└1024" where the phase's sequences start
                at, text = scale.col(stage.x0 + step), f"└{length}"
                if at + len(text) < min(c1, cols):
                    cells[at - 1: at + len(text) + 1] = [(ch, "chart--label") for ch in f" {text} "]
        return [Segment("".join(ch for ch, _ in run), styles[style]) for style, run in groupby(cells, itemgetter(1))]


def _polyline(canvas: "_Canvas", scale: "_Scale", xs, ys, layer: str) -> None:
    """Points joined within a stage; a stage boundary or a missing value breaks the line."""
    prev = None
    for x, y in zip(xs, ys):
        if y != y:
            prev = None
            continue
        dot, stage = scale.dot(x, y), scale.stage_of(x)
        if prev is not None and prev[2] == stage:
            canvas.line(prev[0], prev[1], *dot, layer)
        else:
            canvas.dot(*dot, layer)
        prev = (*dot, stage)


def _y_labels(rows: int, scale: "_Scale", stage: int) -> dict[int, str]:
    """Round values of the stage's y axis on the rows they fall in, all in the axis's one number format."""
    axis = scale.axes[stage]
    ticks, fmt = axis.ticks(min(MAX_Y_TICKS, max(2, (rows + 1) // 2)))
    labels: dict[int, str] = {}
    for value in ticks:
        labels.setdefault(scale.row(stage, value), fmt(value))
    return labels


def _corner(data: ChartData, stage: int | None) -> str:
    """Under the y labels: the stage they belong to, when each stage has its own axis."""
    if stage is None or not data.stages:
        return " " * AXIS_W
    name = data.stages[stage].name
    return (name if len(name) > AXIS_W - 3 else "y:" + name)[: AXIS_W - 1].rjust(AXIS_W - 1) + " "


class _Scale:
    """Maps (x, y) to canvas dots: each stage gets a readable share of the width and its own y axis."""

    def __init__(self, canvas: "_Canvas", stages: tuple[StageView, ...], axes: tuple[YAxis, ...]):
        self.dots_x, self.dots_y = canvas.cols * 2 - 1, canvas.rows * 4 - 1
        self.axes = axes
        spans = [(s.x0, s.x1) for s in stages] or [(0.0, 1.0)]
        total = max(sum(b - a for a, b in spans), 1.0)
        weights = [max(b - a, MIN_STAGE_SHARE * total) for a, b in spans]
        self.bounds, acc = [], 0.0
        for (a, b), w in zip(spans, weights):
            d0 = acc / sum(weights) * self.dots_x
            acc += w
            self.bounds.append((a, b, d0, acc / sum(weights) * self.dots_x))
        self.ends = [b for _, b, _, _ in self.bounds]

    def stage_of(self, x: float) -> int:
        return stage_of(x, self.ends)

    def dot_x(self, x: float) -> int:
        a, b, d0, d1 = self.bounds[self.stage_of(x)]
        f = min(max((x - a) / (b - a), 0.0), 1.0) if b > a else 1.0
        return round(d0 + f * (d1 - d0))

    def dot_y(self, stage: int, y: float) -> int:
        return round((1.0 - self.axes[stage].frac(y)) * self.dots_y)

    def dot(self, x: float, y: float) -> tuple[int, int]:
        return self.dot_x(x), self.dot_y(self.stage_of(x), y)

    def col(self, x: float) -> int:
        return self.dot_x(x) // 2

    def stage_cols(self, i: int) -> tuple[int, int]:
        _, _, d0, d1 = self.bounds[i]
        return int(d0) // 2, int(d1) // 2

    def row(self, stage: int, y: float) -> int:
        return self.dot_y(stage, y) // 4


class _Canvas:
    """Grids of braille cells, one per layer (style), plus overlay characters (boundaries, gates, markers)."""

    def __init__(self, cols: int, rows: int):
        self.cols, self.rows = cols, rows
        self.bits = {layer: [[0] * cols for _ in range(rows)] for layer in LAYERS}
        self.overlay: dict[tuple[int, int], tuple[str, str]] = {}

    def dot(self, dx: int, dy: int, layer: str = "chart--line") -> None:
        c, r = dx // 2, dy // 4
        if 0 <= c < self.cols and 0 <= r < self.rows:
            self.bits[layer][r][c] |= DOT_BITS[dy % 4][dx % 2]

    def line(self, x0: int, y0: int, x1: int, y1: int, layer: str = "chart--line") -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(steps + 1):
            self.dot(x0 + (x1 - x0) * i // steps, y0 + (y1 - y0) * i // steps, layer)

    def vline(self, col: int, style: str) -> None:
        for r in range(self.rows):
            self.overlay.setdefault((r, col), ("┊", style))

    def hline(self, row: int, c0: int, c1: int, style: str) -> None:
        for c in range(max(c0, 0), min(c1 + 1, self.cols)):
            self.overlay[(row, c)] = ("╌", style)

    def text(self, row: int, col: int, text: str, style: str) -> None:
        for j, ch in enumerate(text):
            if 0 <= col + j < self.cols:
                self.overlay[(row, col + j)] = (ch, style)

    def segments(self, r: int, styles: dict) -> list[Segment]:
        cells = [self._cell(r, c) for c in range(self.cols)]
        return [Segment("".join(ch for ch, _ in run), styles[style])
                for style, run in groupby(cells, key=itemgetter(1))]

    def _cell(self, r: int, c: int) -> tuple[str, str]:
        over = self.overlay.get((r, c))
        if over and over[1] in ON_TOP:
            return over
        for layer in LAYERS:
            bits = self.bits[layer][r][c]
            if bits:
                return chr(BRAILLE + bits), layer
        return over or (" ", "chart--line")
