"""A line chart of one metric along the whole curriculum, drawn in braille by one widget."""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from itertools import groupby
from operator import itemgetter

from rich.segment import Segment
from textual.strip import Strip
from textual.widget import Widget

from core.run_state import StageView, Threshold
from tui.format import short_number
from tui.series import SeriesView

AXIS_W = 9
BRAILLE = 0x2800
MIN_STAGE_SHARE = 0.1  # of the curriculum's steps: short stages stay visible
DOT_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))  # [row][col] inside one cell


@dataclass(frozen=True)
class ChartData:
    """What the chart draws: one series, the stages along x and the gate bounds of the metric."""

    metric: str
    series: SeriesView | None
    stages: tuple[StageView, ...]
    thresholds: tuple[Threshold, ...]


class MetricChart(Widget):
    """Braille line chart with stage boundaries and gate thresholds; redrawn only on new data."""

    DEFAULT_CSS = """
    MetricChart { height: 1fr; min-height: 5; }
    MetricChart > .chart--line { color: $accent; }
    MetricChart > .chart--marker { color: $warning; text-style: bold; }
    MetricChart > .chart--boundary { color: $foreground 30%; }
    MetricChart > .chart--threshold { color: $error; }
    MetricChart > .chart--axis { color: $foreground 60%; }
    MetricChart > .chart--label { color: $secondary; }
    """
    COMPONENT_CLASSES = {"chart--line", "chart--marker", "chart--boundary", "chart--threshold", "chart--axis",
                         "chart--label"}

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.data: ChartData | None = None
        self._lines: list[Strip] = []
        self._drawn_for: tuple = ()
        self._version = 0

    def show(self, data: ChartData) -> None:
        """New data to draw; only refreshes when something actually changed."""
        if data != self.data:
            self.data = data
            self._version += 1
            self.refresh()

    def render_line(self, y: int) -> Strip:
        key = (self.size.width, self.size.height, self._version)
        if key != self._drawn_for:
            self._lines = self._draw(self.size.width, self.size.height)
            self._drawn_for = key
        return self._lines[y] if y < len(self._lines) else Strip.blank(self.size.width)

    # -- drawing ------------------------------------------------------------------------------
    def _draw(self, width: int, height: int) -> list[Strip]:
        data = self.data
        if data is None or width <= AXIS_W + 4 or height < 3:
            return []
        canvas = _Canvas(width - AXIS_W, height - 1)
        points = data.series.xs if data.series else ()
        lo, hi = _y_range(data.series.ys, [t.value for t in data.thresholds]) if points else (0.0, 1.0)
        scale = _Scale(canvas, data.stages, lo, hi)
        if not points:
            return self._frame(canvas, data, scale, None, f"no {data.metric} yet")
        self._plot(canvas, scale, data)
        return self._frame(canvas, data, scale, (lo, hi), None)

    def _plot(self, canvas: "_Canvas", scale: "_Scale", data: ChartData) -> None:
        names = [s.name for s in data.stages]
        for t in data.thresholds:
            if t.stage in names:
                c0, c1 = scale.stage_cols(names.index(t.stage))
                canvas.hline(scale.row(t.value), c0, c1, "chart--threshold")
        series = data.series
        if data.metric.startswith("eval/"):
            for x, y in zip(series.xs, series.ys):
                dx, dy = scale.dot(x, y)
                canvas.marker(dx // 2, dy // 4)
            return
        prev = None
        for x, y in zip(series.xs, series.ys):
            dot = scale.dot(x, y)
            stage = bisect_left(scale.ends, x)
            if prev is not None and prev[2] == stage:
                canvas.line(prev[0], prev[1], *dot)
            else:
                canvas.dot(*dot)
            prev = (*dot, stage)

    def _frame(self, canvas: "_Canvas", data: ChartData, scale: "_Scale", y_range, message: str | None) -> list[Strip]:
        for i in range(1, len(data.stages)):
            canvas.vline(scale.stage_cols(i)[0], "chart--boundary")
        styles = {k: self.get_component_rich_style(k) for k in self.COMPONENT_CLASSES}
        axis = styles["chart--axis"]
        labels = _y_labels(canvas.rows, y_range)
        strips = []
        for r in range(canvas.rows):
            label = Segment(labels.get(r, "").rjust(AXIS_W - 1) + "┤" if r in labels else " " * (AXIS_W - 1) + "│", axis)
            strips.append(Strip([label, *canvas.segments(r, styles)], self.size.width))
        if message:
            mid = canvas.rows // 2
            strips[mid] = Strip([Segment(" " * AXIS_W), Segment(message.center(canvas.cols), axis)], self.size.width)
        strips.append(Strip(self._x_axis(canvas.cols, data, scale, styles), self.size.width))
        return strips

    def _x_axis(self, cols: int, data: ChartData, scale: "_Scale", styles) -> list[Segment]:
        """Stage names under the chart, each starting at its boundary, cut to its width."""
        cells = [" "] * cols
        for i, stage in enumerate(data.stages):
            c0, c1 = scale.stage_cols(i)
            text = ("└" + stage.name)[: max(c1 - c0, 1)]
            for j, ch in enumerate(text):
                if c0 + j < cols:
                    cells[c0 + j] = ch
        return [Segment(" " * AXIS_W), Segment("".join(cells), styles["chart--label"])]


class _Scale:
    """Maps (x, y) to canvas dots; each stage gets a readable share of the width however short it is."""

    def __init__(self, canvas: "_Canvas", stages: tuple[StageView, ...], lo: float, hi: float):
        self.dots_x, self.dots_y = canvas.cols * 2 - 1, canvas.rows * 4 - 1
        self.lo, self.span = lo, (hi - lo) or 1.0
        spans = [(s.x0, s.x1) for s in stages] or [(0.0, 1.0)]
        total = max(sum(b - a for a, b in spans), 1.0)
        weights = [max(b - a, MIN_STAGE_SHARE * total) for a, b in spans]
        self.bounds, acc = [], 0.0
        for (a, b), w in zip(spans, weights):
            d0 = acc / sum(weights) * self.dots_x
            acc += w
            self.bounds.append((a, b, d0, acc / sum(weights) * self.dots_x))
        self.ends = [b for _, b, _, _ in self.bounds]

    def dot(self, x: float, y: float) -> tuple[int, int]:
        i = min(bisect_left(self.ends, x), len(self.bounds) - 1)
        a, b, d0, d1 = self.bounds[i]
        f = min(max((x - a) / (b - a), 0.0), 1.0) if b > a else 1.0
        dy = round((1.0 - min(max((y - self.lo) / self.span, 0.0), 1.0)) * self.dots_y)
        return round(d0 + f * (d1 - d0)), dy

    def stage_cols(self, i: int) -> tuple[int, int]:
        _, _, d0, d1 = self.bounds[i]
        return int(d0) // 2, int(d1) // 2

    def row(self, y: float) -> int:
        return self.dot(self.bounds[0][0], y)[1] // 4


class _Canvas:
    """A grid of braille cells plus overlay characters (boundaries, thresholds, markers)."""

    def __init__(self, cols: int, rows: int):
        self.cols, self.rows = cols, rows
        self.bits = [[0] * cols for _ in range(rows)]
        self.overlay: dict[tuple[int, int], tuple[str, str]] = {}

    def dot(self, dx: int, dy: int) -> None:
        c, r = dx // 2, dy // 4
        if 0 <= c < self.cols and 0 <= r < self.rows:
            self.bits[r][c] |= DOT_BITS[dy % 4][dx % 2]

    def line(self, x0: int, y0: int, x1: int, y1: int) -> None:
        steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for i in range(steps + 1):
            self.dot(x0 + (x1 - x0) * i // steps, y0 + (y1 - y0) * i // steps)

    def vline(self, col: int, style: str) -> None:
        for r in range(self.rows):
            self.overlay.setdefault((r, col), ("┊", style))

    def hline(self, row: int, c0: int, c1: int, style: str) -> None:
        for c in range(max(c0, 0), min(c1 + 1, self.cols)):
            self.overlay[(row, c)] = ("╌", style)

    def marker(self, col: int, row: int) -> None:
        self.overlay[(row, min(col, self.cols - 1))] = ("●", "chart--marker")

    def segments(self, r: int, styles: dict) -> list[Segment]:
        cells = [self._cell(r, c) for c in range(self.cols)]
        return [Segment("".join(ch for ch, _ in run), styles[style])
                for style, run in groupby(cells, key=itemgetter(1))]

    def _cell(self, r: int, c: int) -> tuple[str, str]:
        bits = self.bits[r][c]
        over = self.overlay.get((r, c)) if self.overlay else None
        if over and (not bits or over[1] == "chart--marker"):
            return over
        return (chr(BRAILLE + bits), "chart--line") if bits else (" ", "chart--line")


def _y_range(values, extra) -> tuple[float, float]:
    """The plotted y range: the values (and thresholds) with 5 % room, never below zero for a series that
    never goes below zero (a loss, a rate)."""
    vals = [v for v in values if v == v] + list(extra)
    lo, hi = min(vals), max(vals)
    pad = (hi - lo) * 0.05 or abs(hi) * 0.05 or 1.0
    return (lo - pad if lo < 0 or lo - pad >= 0 else 0.0), hi + pad


def _y_labels(rows: int, y_range) -> dict[int, str]:
    if y_range is None:
        return {}
    lo, hi = y_range
    picks = {0: hi, rows - 1: lo}
    if rows >= 5:
        picks[(rows - 1) // 2] = lo + (hi - lo) * (1 - ((rows - 1) // 2) / (rows - 1))
    return {r: short_number(v) for r, v in picks.items()}
