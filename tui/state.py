"""What the run screen draws: the run as core/run_state.py folds it, plus chart series and the worker log.

`ChartSeries` folds the same events as the poller's `RunState` into bounded metric series along the
curriculum's timeline; `snapshot()` joins both (and the log tail) into one frozen `RunSnapshot`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from core.events import CHART_METRICS, EventKind
from core.run_state import RunState, RunView
from core.store import Event
from tui.chart_scale import reward_part
from tui.series import Series, SeriesView


@dataclass(frozen=True)
class RunSnapshot(RunView):
    """Everything the run screen draws, at one moment."""

    series: tuple[SeriesView, ...] = ()
    log_stage: str | None = None
    log_lines: tuple[str, ...] = ()
    log_total: int = 0

    def series_named(self, name: str) -> SeriesView | None:
        return next((s for s in self.series if s.name == name), None)


class ChartSeries:
    """The charted metrics, each reward function's part of `reward`, and every eval metric, each a bounded
    series on the run's timeline."""

    def __init__(self, cap: int = 512):
        self.cap = cap
        self.series: dict[str, Series] = {}

    def fold(self, events: list[Event], run: RunState) -> None:
        """Add the points of `events`; `run` (already fed them) places each stage on the timeline."""
        for ev in events:
            if ev.kind == EventKind.METRIC and _charted(ev.name) and ev.value is not None:
                self._named(ev.name).add(run.x(ev.stage, ev.step), ev.value)
            elif ev.kind == EventKind.EVAL_RESULT and ev.name is not None and ev.value is not None:
                self._named(ev.name).add(run.span(ev.stage)[1], ev.value)
            elif ev.kind == EventKind.RESUMED:
                self._forget_after(run, ev.stage, int(ev.step or 0))

    def views(self) -> tuple[SeriesView, ...]:
        return tuple(s.view() for s in self.series.values())

    def _named(self, name: str) -> Series:
        if name not in self.series:
            self.series[name] = Series(name, self.cap)
        return self.series[name]

    def _forget_after(self, run: RunState, stage: str | None, step: int) -> None:
        """A resumed stage re-runs its steps after `step`: drop their points."""
        cut, end = run.x(stage, step), run.span(stage)[1]
        hi = end if end > cut else float("inf")  # a stage of unknown length: drop everything after
        for series in self.series.values():
            series.drop_span(cut, hi)


def _charted(name: str | None) -> bool:
    return name in CHART_METRICS or (name is not None and reward_part(name) is not None)


def snapshot(view: RunView, series: tuple[SeriesView, ...], log_stage: str | None = None,
             log_lines: tuple[str, ...] = (), log_total: int = 0) -> RunSnapshot:
    """The run screen's picture: `view` with the chart series and the log tail."""
    fields = {f.name: getattr(view, f.name) for f in dataclasses.fields(view)}
    return RunSnapshot(**fields, series=series, log_stage=log_stage, log_lines=log_lines, log_total=log_total)
