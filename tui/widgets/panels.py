"""Small one-purpose panels of the run screen: the run header, hardware and the metric picker."""
from __future__ import annotations

from rich.markup import escape
from textual.widgets import Static

from core.events import RUN_LIVE
from core.run_state import HardwareView
from core.units import duration
from tui.format import metric_label, short_metric_label, size, size_pair, status_look
from tui.state import RunSnapshot

STALE_HEARTBEAT_S = 30.0


class ChangingText(Static):
    """A Static that repaints only when its text really changed (updates come ~20 times a second). `SIZED_BY_CSS`:
    the stylesheet fixes its size whatever the text, so a change repaints it alone, without a layout of the
    whole screen (that layout was most of a live refresh's cost)."""

    SIZED_BY_CSS = False
    _shown: str | None = None

    def set_text(self, text: str) -> None:
        if text != self._shown:
            self._shown = text
            self.update(text, layout=not self.SIZED_BY_CSS)


class RunHeader(ChangingText):
    """Run id, status, active stage and whether the supervisor is alive."""

    SIZED_BY_CSS = True  # #run-header: height 1, the screen's width

    def show(self, snap: RunSnapshot, now: float) -> None:
        glyph, words, style = status_look(snap.status)
        parts = [f"[b]{escape(snap.run_id)}[/]", f"[{style}]{glyph} {words}[/]" if style else f"{glyph} {words}"]
        stage, together = snap.running_stage, snap.running_stages
        if len(together) > 1:  # `parallel:` (their progress is in the curriculum panel)
            parts.append("stages " + ", ".join(f"[b]{escape(s.name)}[/]" for s in together))
        elif stage is not None:
            where = f"{stage.step or 0}/{stage.total_steps}" if stage.total_steps else ""
            parts.append(f"stage [b]{escape(stage.name)}[/] {where}".rstrip())
        parts.append(_supervisor_words(snap, now))
        self.set_text("  ".join(parts))


def _supervisor_words(snap: RunSnapshot, now: float) -> str:
    if snap.status not in RUN_LIVE:
        end = snap.finished_at or snap.newest_ts or snap.created_at
        return f"[dim]ran {duration(end - snap.created_at)}[/]"
    if snap.heartbeat is None:
        return "[dim]supervisor starting…[/]"
    age = now - float(snap.heartbeat)
    if age > STALE_HEARTBEAT_S:
        return f"[bold $error]supervisor silent {duration(age)}[/]"
    return f"[$success]supervisor ♥[/] [dim]{duration(age)} ago[/]"


class HardwarePanel(ChangingText):
    """Per-GPU memory and utilisation, and the run's process tree; says plainly when there is no GPU."""

    def show(self, hw: HardwareView | None, run_live: bool) -> None:
        self.set_text(hardware_text(hw, run_live))


def hardware_text(hw: HardwareView | None, run_live: bool) -> str:
    """Lines of at most 24 characters (the panel's width at 80 columns): one per GPU under a header, then CPU."""
    if hw is None:
        return "[dim]no hardware sample yet[/]"
    head = f"[dim]{'':2}{'GPU memory':<12}{'use':>4} {'util':>4}[/]"
    lines = [head] if hw.gpus else ["[$warning]no GPU[/] — CPU only"]
    for gpu in hw.gpus:
        frac = gpu.mem_used / gpu.mem_total if gpu.mem_total else 0.0
        util = f"{gpu.util:.0f}%" if gpu.util is not None else "-"
        memory = size_pair(gpu.mem_used, gpu.mem_total)
        lines.append(f"{gpu.index:<2}{memory:<12}[{_load_style(frac)}]{frac:>4.0%}[/] {util:>4}")
    cpu = f"{hw.cpu:.0f}%" if hw.cpu is not None else "-"
    lines.append(f"CPU {cpu}  RSS {size(hw.rss)}")
    procs = hw.procs or 0
    where = f"{escape(hw.stage or '-')}, {procs} proc{'s' if procs != 1 else ''}"
    lines.append(f"[dim]{where if run_live else 'last: ' + where}[/]")
    return "\n".join(lines)


def _load_style(fraction: float) -> str:
    return "$error" if fraction > 0.9 else "$warning" if fraction > 0.75 else "$success"


class MetricPicker(ChangingText):
    """The metrics one can chart, numbered for the 1–9 keys; the chosen one highlighted. Where the full names do
    not fit the width (80 columns), they are shortened ("grad", "acc", "tok/s")."""

    SIZED_BY_CSS = True  # #metric-picker: height 1, the chart box's width

    _picked: tuple[tuple[str, ...], str, frozenset[str]] | None = None

    def show(self, names: list[str], chosen: str, available: set[str]) -> None:
        self._picked = (tuple(names[:9]), chosen, frozenset(available))
        self._draw()

    def on_resize(self) -> None:
        if self._picked is not None:
            self._draw()

    def _draw(self) -> None:
        names, chosen, available = self._picked
        fits = sum(len(metric_label(name)) + 4 for name in names) <= self.size.width
        parts = []
        for i, name in enumerate(names, start=1):
            label = f"{i} {escape(metric_label(name) if fits else short_metric_label(name))}"
            if name == chosen:
                parts.append(f"[reverse b] {label} [/]")
            elif name in available:
                parts.append(f" {label} ")
            else:
                parts.append(f"[dim] {label} [/]")
        self.set_text("".join(parts))
