"""Scrolling text panels: the event list and the tail of the running worker's log (with a filter)."""
from __future__ import annotations

from collections import deque

from rich.markup import escape
from textual.binding import Binding
from textual.content import Content
from textual.widgets import Log, RichLog

from core.run_state import EventLine
from tui.format import SEVERITY_STYLE, elapsed_stamp
from tui.state import RunSnapshot

KEEP_LINES = 2000

VIM_SCROLL = [
    Binding("j", "scroll_down", "Down", show=False),
    Binding("k", "scroll_up", "Up", show=False),
]


class EventList(RichLog):
    """Checkpoints, evals, gates, errors: appended as they arrive, newest at the bottom."""

    BINDINGS = VIM_SCROLL

    def __init__(self, **kwargs):
        super().__init__(max_lines=KEEP_LINES, wrap=False, markup=False, auto_scroll=True, **kwargs)
        self.last_id = 0

    def show(self, snap: RunSnapshot) -> None:
        fresh = [e for e in snap.events if e.id > self.last_id]
        for line in fresh:
            self.write(event_content(line, snap.created_at))
        if fresh:
            self.last_id = fresh[-1].id

    def note(self, text: str, severity: str = "info") -> None:
        """A line from this screen itself (a decision just sent, a stop requested)."""
        style = SEVERITY_STYLE.get(severity, "")
        self.write(Content.from_markup(f"[dim]{'now':>9}[/] [{style}]{escape(text)}[/]" if style
                                       else f"[dim]{'now':>9}[/] {escape(text)}"))


def event_content(line: EventLine, origin: float) -> Content:
    style = SEVERITY_STYLE.get(line.severity, "")
    stage = escape((line.stage or "run")[:8]).ljust(8)
    text = escape(line.text)
    body = f"[{style}]{text}[/]" if style else text
    return Content.from_markup(f"[dim]{elapsed_stamp(line.ts, origin)}[/] [b]{stage}[/] {body}")


class LogTail(Log):
    """The last lines of one stage's worker log; `/` narrows it to lines containing some text."""

    BINDINGS = VIM_SCROLL

    def __init__(self, **kwargs):
        super().__init__(max_lines=KEEP_LINES, auto_scroll=True, **kwargs)
        self.lines_seen: deque[str] = deque(maxlen=KEEP_LINES)
        self.stage: str | None = None
        self.total = 0
        self.filter_text = ""

    def show(self, snap: RunSnapshot) -> None:
        if snap.log_stage != self.stage:
            self.stage, self.total = snap.log_stage, 0
            self.lines_seen.clear()
            self.clear()
        fresh = snap.log_total - self.total
        if fresh <= 0:
            return
        new = list(snap.log_lines)[-min(fresh, len(snap.log_lines)):] if snap.log_lines else []
        self.total = snap.log_total
        self.lines_seen.extend(new)
        self.write_lines([ln for ln in new if self._keep(ln)])

    def set_filter(self, text: str) -> None:
        """Show only lines containing `text` (case-insensitive); empty shows everything."""
        self.filter_text = text.strip().lower()
        self.clear()
        self.write_lines([ln for ln in self.lines_seen if self._keep(ln)])

    def _keep(self, line: str) -> bool:
        return not self.filter_text or self.filter_text in line.lower()
