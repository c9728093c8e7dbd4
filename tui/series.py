"""Bounded metric series: a continuous timeline downsampled in place, so memory never grows."""
from __future__ import annotations

import bisect
from dataclasses import dataclass

DEFAULT_CAP = 512


@dataclass(frozen=True)
class SeriesView:
    """A frozen copy of one series for the screen: x on the run timeline, y the metric."""

    name: str
    xs: tuple[float, ...]
    ys: tuple[float, ...]

    @property
    def last(self) -> float | None:
        return self.ys[-1] if self.ys else None


class Series:
    """Points of one metric, at most `cap`; when full, neighbours are averaged pairwise.

    After each halving new points are averaged in groups of `stride`, so the density along x
    stays even however long the run is.
    """

    def __init__(self, name: str, cap: int = DEFAULT_CAP):
        self.name, self.cap = name, cap
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.stride = 1
        self._pend_n, self._pend_x, self._pend_sum = 0, 0.0, 0.0
        self.version = 0

    def __len__(self) -> int:
        return len(self.xs) + (1 if self._pend_n else 0)

    def add(self, x: float, y: float) -> None:
        self.version += 1
        last = self._pend_x if self._pend_n else self.xs[-1] if self.xs else None
        if last is not None and x < last:  # a stage running beside one later on the timeline (`parallel:`)
            at = bisect.bisect(self.xs, x)
            self.xs.insert(at, x)
            self.ys.insert(at, y)
            if len(self.xs) >= self.cap:
                self._halve()
            return
        self._pend_n += 1
        self._pend_x = x
        self._pend_sum += y
        if self._pend_n >= self.stride:
            self.xs.append(self._pend_x)
            self.ys.append(self._pend_sum / self._pend_n)
            self._pend_n, self._pend_sum = 0, 0.0
            if len(self.xs) >= self.cap:
                self._halve()

    def _halve(self) -> None:
        xs, ys = self.xs, self.ys
        n = len(xs) // 2 * 2
        self.xs = [xs[i + 1] for i in range(0, n, 2)] + xs[n:]
        self.ys = [(ys[i] + ys[i + 1]) / 2 for i in range(0, n, 2)] + ys[n:]
        self.stride *= 2

    def drop_span(self, lo: float, hi: float) -> None:
        """Forget points with lo < x <= hi (a resumed stage re-runs those steps)."""
        self.version += 1
        keep = [i for i, x in enumerate(self.xs) if not lo < x <= hi]
        if len(keep) != len(self.xs):
            self.xs = [self.xs[i] for i in keep]
            self.ys = [self.ys[i] for i in keep]
        if self._pend_n and lo < self._pend_x <= hi:
            self._pend_n, self._pend_sum = 0, 0.0

    def view(self) -> SeriesView:
        xs, ys = tuple(self.xs), tuple(self.ys)
        if self._pend_n:
            xs += (self._pend_x,)
            ys += (self._pend_sum / self._pend_n,)
        return SeriesView(self.name, xs, ys)
