"""Scrolling text panels: the event list and the tail of one stage's worker log (with a filter).

Both wrap at their own width and wrap again when it changes, so neither ever needs a horizontal scrollbar.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable

from rich.markup import escape
from rich.segment import Segment, Segments
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.strip import Strip
from textual.widgets import RichLog

from core.run_state import EventLine
from tui.format import SEVERITY_STYLE, elapsed_stamp
from tui.log_lines import ERROR, LIBRARY, PROGRESS, WARNING, folded, shown
from tui.state import RunSnapshot

KEEP_LINES = 2000
MIN_BODY = 16  # columns an event's text keeps beside its time and stage before it wraps under them
WIDE = 10_000  # a width no line reaches: the text a filter is matched against
KEY_STYLE = "dim"  # metric names recede, their values stand out ($text-muted needs a background to blend)
KIND_STYLE = {LIBRARY: "dim", PROGRESS: "dim", WARNING: "$warning", ERROR: "$error"}
NO_HEAD = Content("")

VIM_SCROLL = [
    Binding("j", "scroll_down", "Down", show=False),
    Binding("k", "scroll_up", "Up", show=False),
]


class WrappingLog(RichLog):
    """A RichLog of Content wrapped to its width (long words folded), drawn again when the width changes."""

    BINDINGS = VIM_SCROLL

    def __init__(self, **kwargs):
        super().__init__(max_lines=KEEP_LINES, min_width=1, markup=False, auto_scroll=True, **kwargs)
        self.drawn_width = 0
        self.rows_written = 0  # since the last clear; the oldest rows beyond KEEP_LINES are gone from `lines`

    def on_resize(self) -> None:
        if self.scrollable_content_region.width != self.drawn_width:
            self.drawn_width = self.scrollable_content_region.width
            self.redraw()

    def add(self, entries: Iterable[tuple[Content, Content]]) -> list[int]:
        """Write each (head, body) as rows of the pane's width, in one write; $variables in styles come from the
        app's theme. Returns the rows each entry took (none before the pane is laid out)."""
        if not self.drawn_width:
            return []  # not laid out yet: the first resize draws everything
        parse = self.app.stylesheet.parse_style
        rows = [self._rows(head, body) for head, body in entries]
        segments = [Segment(text, style.rich_style) for entry in rows for row in entry
                    for text, style in row.render(self.visual_style, end="\n", parse_style=parse)]
        if segments:
            self.write(Segments(segments))
        self.rows_written += sum(map(len, rows))
        return list(map(len, rows))

    def clear(self) -> "WrappingLog":
        self.rows_written = 0
        return super().clear()

    def _rows(self, head: Content, body: Content) -> list[Content]:
        """`head` + `body` wrapped to the pane's width, the body's later rows indented under its first."""
        if head.cell_length + MIN_BODY > self.drawn_width:
            head, body = Content(""), head + body  # too narrow to indent: wrap both as one
        rows = body.wrap(self.drawn_width - head.cell_length)
        return [head + rows[0], *(Content(" " * head.cell_length) + row for row in rows[1:])]

    def redraw(self) -> None:
        """Clear and write every kept line again at the current width."""
        raise NotImplementedError

    @property
    def line_count(self) -> int:
        """Rows drawn (a wrapped line counts each of its rows)."""
        return len(self.lines)


class EventList(WrappingLog):
    """Checkpoints, evals, gates, errors: appended as they arrive, newest at the bottom. Focused, a cursor marks
    one event (the newest, following new ones, until moved up); Enter asks for that event's detail."""

    COMPONENT_CLASSES = {"event-list--cursor"}
    DEFAULT_CSS = "EventList > .event-list--cursor { background: $block-cursor-background 45%; }"
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("home", "move(-1_000_000)", "First", show=False),
        Binding("end", "move(1_000_000)", "Last", show=False),
        Binding("enter", "choose", "Event detail"),
    ]

    @dataclass
    class Chosen(Message):
        """Enter on an event of the run (not on a note of the screen's own)."""

        event_id: int

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.last_id = 0
        self.kept: deque[tuple[Content, Content, int | None]] = deque(maxlen=KEEP_LINES)
        self.starts: deque[int] = deque(maxlen=KEEP_LINES)  # each kept entry's first row (counted in rows_written)
        self.cursor: int | None = None  # an index into kept; None: the newest, following

    def show(self, snap: RunSnapshot) -> None:
        fresh = [e for e in snap.events if e.id > self.last_id]
        for line in fresh:
            self._add(*event_content(line, snap.created_at), line.id)
        if fresh:
            self.last_id = fresh[-1].id

    def note(self, text: str, severity: str = "info") -> None:
        """A line from this screen itself (a decision just sent, a stop requested)."""
        self._add(Content.from_markup(f"[dim]{'now':>9}[/] "), _styled(text, severity), None)

    def _add(self, head: Content, body: Content, event_id: int | None) -> None:
        if len(self.kept) == KEEP_LINES and self.cursor is not None:
            self.cursor = max(0, self.cursor - 1)  # the oldest entry leaves
        self.kept.append((head, body, event_id))
        self.starts.append(self.rows_written)
        self.add([(head, body)])

    def redraw(self) -> None:
        self.clear()
        self.starts.clear()
        start = 0
        for rows in self.add([(head, body) for head, body, _ in self.kept]):
            self.starts.append(start)
            start += rows

    # -- the cursor ---------------------------------------------------------------------------------------
    def _span(self, index: int) -> tuple[int, int]:
        """The rows of `lines` that kept entry `index` fills (negative: trimmed away)."""
        trimmed = self.rows_written - len(self.lines)
        end = self.starts[index + 1] if index + 1 < len(self.starts) else self.rows_written
        return self.starts[index] - trimmed, end - trimmed

    def _at(self) -> int:
        return len(self.kept) - 1 if self.cursor is None else self.cursor

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if self.has_focus and self.kept and len(self.starts) == len(self.kept):
            first, end = self._span(self._at())
            if first <= self.scroll_offset.y + y < end:
                cursor = self.get_component_rich_style("event-list--cursor", partial=True)
                strip = Strip(Segment.apply_style(strip, post_style=cursor), strip.cell_length)  # over the text's
        return strip

    def action_move(self, delta: int) -> None:
        """Move the cursor `delta` events (clamped to those still drawn); on the newest it follows again."""
        if not self.kept or len(self.starts) != len(self.kept):
            return
        oldest = next((i for i in range(len(self.kept)) if self._span(i)[0] >= 0), len(self.kept) - 1)
        at = min(max(self._at() + delta, oldest), len(self.kept) - 1)
        self.cursor = None if at == len(self.kept) - 1 else at
        self.auto_scroll = self.cursor is None
        first, end = self._span(at)
        if first < self.scroll_offset.y:
            self.scroll_to(y=first, animate=False)
        elif end > self.scroll_offset.y + self.scrollable_content_region.height:
            self.scroll_to(y=end - self.scrollable_content_region.height, animate=False)
        self.refresh()

    def action_choose(self) -> None:
        if self.kept and (event_id := self.kept[self._at()][2]) is not None:
            self.post_message(self.Chosen(event_id))

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
def event_content(line: EventLine, origin: float) -> tuple[Content, Content]:
    """An event as (time and stage, text), the text in its severity's colour."""
    stage = escape((line.stage or "run")[:8]).ljust(8)
    head = Content.from_markup(f"[dim]{elapsed_stamp(line.ts, origin)}[/] [b]{stage}[/] ")
    return head, _styled(line.text, line.severity)


def _styled(text: str, severity: str) -> Content:
    return Content.styled(text, SEVERITY_STYLE.get(severity, ""))


class LogTail(WrappingLog):
    """The last lines of one stage's worker log, formatted by tui.log_lines; `/` narrows it to lines containing
    some text (and shows matching library warnings whole)."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
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
        self._write(new)

    def set_filter(self, text: str) -> None:
        """Show only lines containing `text` (case-insensitive), raw or as drawn; empty shows everything."""
        self.filter_text = text.strip().lower()
        self.redraw()

    def redraw(self) -> None:
        self.clear()
        self._write(self.lines_seen)

    def _write(self, raw: Iterable[str]) -> None:
        self.add((NO_HEAD, self._content(line)) for line in folded(ln for ln in raw if self._keep(ln)))

    def _content(self, line: str) -> Content:
        look = shown(line, self.drawn_width, full=bool(self.filter_text))
        content = Content.styled(look.text, KIND_STYLE.get(look.kind, ""))
        for start, end in look.keys:
            content = content.stylize(KEY_STYLE, start, end)
        return content

    def _keep(self, line: str) -> bool:
        needle = self.filter_text
        return not needle or needle in line.lower() or needle in shown(line, WIDE, full=True).text.lower()
