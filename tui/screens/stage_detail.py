"""The stage detail screen: one stage's resolved settings, gate, metrics, checkpoints, attempts and failure
(read by core/stage_detail.py, its sections drawn by tui/stage_detail_view.py).

Enter on a stage of the run screen opens it (a pending gate opens its dialog instead). A thread reads
the store (and the stage's folder: checkpoints on disk, the failed worker's `failure.json`) whenever
the store changed, and posts a `StageDetail`; the screen draws it. Read-only: opening or closing it
never touches the run.
"""
from __future__ import annotations

import threading
from typing import Any

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker, WorkerState, get_current_worker

from core.events import RUN_LIVE
from core.runs import RunPaths
from core.stage_detail import StageDetail, read_stage_detail
from core.store import RunStore
from tui.format import status_look
from tui.stage_detail_view import detail_renderable, palette_of

LIVE_POLL_S = 1.0       # a running stage changes every logged step; once a second is plenty here
FINISHED_POLL_S = 2.0   # a finished run only changes when it is resumed


class DetailRead(Message):
    """The reader found the stage changed (or read it the first time)."""

    def __init__(self, detail: StageDetail | None):
        super().__init__()
        self.detail = detail


class StageDetailScreen(Screen):
    """One stage of a run in full; refreshed while the run lives; Esc goes back to the run."""

    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("j", "scroll(1)", show=False),
        Binding("k", "scroll(-1)", show=False),
    ]

    def __init__(self, paths: RunPaths, stage: str, **kwargs):
        super().__init__(**kwargs)
        self.paths, self.stage = paths, stage
        self.detail: StageDetail | None = None
        self.reads = 0                 # messages from the reader applied (tests wait on it)
        self._wake = threading.Event()

    def compose(self) -> ComposeResult:
        yield Static(self._header_text(), id="detail-header")
        with VerticalScroll(id="detail-body"):
            yield Static("[dim]reading the run store…[/]", id="detail-text")
        yield Footer()

    def on_mount(self) -> None:
        body = self.query_one("#detail-body")
        body.border_title = f"Stage · {self.stage}"
        body.border_subtitle = "↑ ↓ scroll · Esc back"
        body.focus()
        self._read()

    def on_unmount(self) -> None:
        self.workers.cancel_group(self, "detail-poll")
        self._wake.set()

    @work(thread=True, exclusive=True, group="detail-poll", exit_on_error=False, description="reading the stage")
    def _read(self) -> None:
        worker = get_current_worker()
        last_key: Any = None
        cache: dict = {}
        with RunStore(self.paths.db) as store:
            while not worker.is_cancelled:
                status = store.get_meta("status")
                key = (store.last_event_id(), status, [tuple(r.values()) for r in store.stages()],
                       store.decision(self.stage))
                if key != last_key:
                    last_key = key
                    self.post_message(DetailRead(read_stage_detail(store, self.paths, self.stage, cache)))
                self._wake.wait(LIVE_POLL_S if status in RUN_LIVE else FINISHED_POLL_S)
                self._wake.clear()

    @on(DetailRead)
    def _apply(self, message: DetailRead) -> None:
        self.reads += 1
        if message.detail == self.detail and self.detail is not None:
            return
        self.detail = message.detail
        self._draw()

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.query_one("#detail-text", Static).update(
                f"[$error]reading the stage failed: {escape(str(event.worker.error))}[/]")

    def _draw(self) -> None:
        text = self.query_one("#detail-text", Static)
        self.query_one("#detail-header", Static).update(self._header_text())
        if self.detail is None:
            text.update(f"This run has no stage [b]{escape(self.stage)}[/].")
            return
        text.update(detail_renderable(self.detail, palette_of(self.app.get_css_variables())))

    def _header_text(self) -> str:
        d = self.detail
        kind = f" ({escape(d.kind)})" if d is not None and d.kind != d.name else ""
        parts = [f"[b]Stage {escape(self.stage)}[/]{kind}", escape(self.paths.id)]
        if d is not None:
            glyph, words, style = status_look(d.status)
            parts.append(f"[{style}]{glyph} {words}[/]" if style else f"{glyph} {words}")
        return "  ".join(parts)

    def action_scroll(self, lines: int) -> None:
        self.query_one("#detail-body", VerticalScroll).scroll_relative(y=lines, animate=False)

    def action_close(self) -> None:
        self.app.pop_screen()
