"""The runs screen: every run under the runs directory with status, stage and age."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState, get_current_worker

from core.events import RunStatus, StageStatus
from core.runs import RunPaths, list_runs
from core.store import RunStore
from core.units import duration
from tui.format import status_look

REFRESH_S = 2.0
STATUS_COLOUR = {RunStatus.COMPLETED: "green", RunStatus.RUNNING: "cyan", RunStatus.FAILED: "red",
                 RunStatus.GATE_FAILED: "red", RunStatus.REJECTED: "red", RunStatus.STOPPED: "yellow",
                 RunStatus.INTERRUPTED: "yellow"}
DEMO_CONFIG = Path("configs/demo.yaml")


@dataclass(frozen=True)
class RunRow:
    """One run as the list shows it."""

    paths: RunPaths
    name: str
    status: str
    stage: str
    created_at: float
    heartbeat: float | None


def read_run_row(paths: RunPaths) -> RunRow:
    """Meta and stages of one run; a broken database shows as such instead of failing the list."""
    try:
        with RunStore(paths.db) as store:
            meta, stages = store.meta(), store.stages()
    except Exception as exc:  # noqa: BLE001 - any unreadable run is shown, not fatal
        return RunRow(paths, "?", f"unreadable: {exc}", "-", 0.0, None)
    active = [s for s in stages if s["status"] != StageStatus.WAITING]
    stage = active[-1] if active else None
    where = f"{stage['name']} ({status_look(stage['status'])[1]})" if stage else "-"
    return RunRow(paths, str(meta.get("name", "?")), str(meta.get("status", "?")), where,
                  float(meta.get("created_at") or 0.0), meta.get("heartbeat"))


class RunsScreen(Screen):
    """Pick a run to attach to, or start the demo."""

    BINDINGS = [
        Binding("enter", "attach", "Attach"),
        Binding("n", "new_demo", "New demo run"),
        Binding("r", "refresh", "Refresh"),
        Binding("j", "cursor(1)", show=False),
        Binding("k", "cursor(-1)", show=False),
    ]

    class RunsListed(Message):
        """The runs directory was read."""

        def __init__(self, rows: list[RunRow]):
            super().__init__()
            self.rows = rows

    class RunCreated(Message):
        """A new run was created and its supervisor started."""

        def __init__(self, paths: RunPaths):
            super().__init__()
            self.paths = paths

    def __init__(self, runs_dir: Path):
        super().__init__()
        self.runs_dir = runs_dir
        self.rows: list[RunRow] = []
        self._wake = threading.Event()
        self._hidden = False

    def compose(self) -> ComposeResult:
        yield Static(f"[b]cockpit[/]  runs in [b]{self.runs_dir}[/]", id="runs-header")
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-empty")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("run", "name", "status", "stage", "age", "supervisor")
        table.focus()
        self._list_runs()

    def on_unmount(self) -> None:
        self.workers.cancel_group(self, "list")
        self._wake.set()

    def on_screen_suspend(self) -> None:
        self._hidden = True  # under a run screen: stop listing (it was most of the idle CPU there)

    def on_screen_resume(self) -> None:
        self._hidden = False
        self._wake.set()

    @work(thread=True, exclusive=True, group="list", exit_on_error=False, description="listing runs")
    def _list_runs(self) -> None:
        worker = get_current_worker()
        while not worker.is_cancelled:
            if not self._hidden:
                rows = [read_run_row(p) for p in reversed(list_runs(self.runs_dir))]
                self.post_message(self.RunsListed(rows))
            self._wake.wait(None if self._hidden else REFRESH_S)
            self._wake.clear()

    @on(RunsListed)
    def _show_rows(self, message: RunsListed) -> None:
        if message.rows == self.rows:
            return
        self.rows = message.rows
        table = self.query_one(DataTable)
        keep = table.cursor_row
        with self.app.batch_update():
            table.clear()
            now = self.app.clock()
            for row in message.rows:
                table.add_row(*self._cells(row, now), key=row.paths.id)
            if message.rows:
                table.move_cursor(row=min(keep, len(message.rows) - 1))
            empty = "" if message.rows else "No runs yet. Press [b]n[/] to start the demo curriculum."
            self.query_one("#runs-empty", Static).update(empty)

    def _cells(self, row: RunRow, now: float) -> tuple:
        glyph, words, _ = status_look(row.status)
        colour = STATUS_COLOUR.get(row.status, "")
        alive = "-"
        if row.status == RunStatus.RUNNING and row.heartbeat:
            age = now - float(row.heartbeat)
            alive = f"♥ {duration(age)} ago" if age < 30 else f"silent {duration(age)}"
        return (row.paths.id, row.name, Text(f"{glyph} {words}", style=colour), row.stage,
                duration(now - row.created_at) if row.created_at else "-", alive)

    def action_cursor(self, delta: int) -> None:
        table = self.query_one(DataTable)
        table.move_cursor(row=table.cursor_row + delta)

    def action_refresh(self) -> None:
        self._wake.set()

    @on(DataTable.RowSelected)
    def _row_selected(self) -> None:
        self.action_attach()

    def action_attach(self) -> None:
        table = self.query_one(DataTable)
        if self.rows and 0 <= table.cursor_row < len(self.rows):
            self.app.open_run(self.rows[table.cursor_row].paths)

    def action_new_demo(self) -> None:
        self.notify("Starting a demo run…", timeout=3)
        self._start_demo()

    @work(thread=True, group="launch", exit_on_error=False, description="starting the demo run")
    def _start_demo(self) -> None:
        from core.launch import new_run  # the lead's modules; imported only when asked for
        from core.supervisor import start_detached

        paths = new_run(DEMO_CONFIG, self.runs_dir)
        start_detached(paths)
        self.post_message(self.RunCreated(paths))

    @on(RunCreated)
    def _run_created(self, message: RunCreated) -> None:
        self._wake.set()
        self.app.open_run(message.paths)

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.notify(f"{event.worker.description}: {event.worker.error}", title="Error", severity="error",
                        timeout=10)
