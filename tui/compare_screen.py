"""The compare screen: the run's checkpoints on the same prompts, metrics per target, outputs side by side.

Default selection: every stage of the run's lineage (base and each stage's final output). The
comparison runs in the chat worker (adapters of one base share it); this screen only renders.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState
from textual.widgets import Footer, SelectionList, Static
from textual.widgets.selection_list import Selection

from core.chat_client import ChatWorker, CompareResult, prompt_set, run_compare
from core.runs import RunPaths
from core.targets import MAX_COMPARED, Target, lineage_targets, run_targets
from tui.compare_tables import metrics_table, outputs_table

SHOWN_PROMPTS = 20


@dataclass
class CompareTargetsListed(Message):
    """The run's targets are known; `chosen` are the ones preselected (the lineage)."""

    targets: list[Target]
    chosen: list[int]


@dataclass
class CompareProgressed(Message):
    label: str
    done: int
    total: int


@dataclass
class CompareFinished(Message):
    result: CompareResult


@dataclass
class CompareFailed(Message):
    error: str


class CompareScreen(Screen):
    """Pick 2-6 checkpoints on the left, `r` compares them on the stage's eval set."""

    DEFAULT_CSS = """
    CompareScreen #compare-targets { width: 30; border: round $primary; }
    CompareScreen.-compact #compare-targets { width: 20; }
    CompareScreen #compare-status { height: 1; color: $text-muted; }
    CompareScreen #compare-results { height: 1fr; }
    """
    BINDINGS = [("r", "compare", "compare selected"), ("escape", "close", "back")]

    def __init__(self, run: RunPaths, worker: ChatWorker | None = None, limit: int | None = None,
                 auto_start: bool = True):
        super().__init__()
        self.run = run
        self.limit, self.auto_start = limit, auto_start
        self._worker, self._owns_worker = worker, worker is None
        self._targets: list[Target] = []
        self.result: CompareResult | None = None
        self.running = False

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield SelectionList[int](id="compare-targets")
            with Vertical():
                yield Static("listing checkpoints ...", id="compare-status")
                with VerticalScroll(id="compare-results"):
                    yield Static(id="compare-metrics")
                    yield Static(id="compare-outputs")
        yield Footer()

    def on_mount(self) -> None:
        self._list_targets()

    def on_resize(self) -> None:
        self.set_class(self.size.width < 100, "-compact")  # 80 columns: the tables get the width

    def on_unmount(self) -> None:
        if self._owns_worker and self._worker is not None:
            threading.Thread(target=self._worker.close, name="compare-close", daemon=True).start()

    # -- thread workers -----------------------------------------------------------------------
    @work(thread=True, group="compare-targets", exit_on_error=False)
    def _list_targets(self) -> None:
        targets = run_targets(self.run)
        lineage = {t.path for t in lineage_targets(self.run)}
        self.post_message(CompareTargetsListed(targets, [i for i, t in enumerate(targets) if t.path in lineage]))

    @work(thread=True, exclusive=True, group="compare-run", exit_on_error=False)
    def _compare(self, targets: list[Target]) -> None:
        try:
            if self._worker is None:
                self._worker = ChatWorker().start()
            result = run_compare(self._worker, targets, prompt_set(targets, limit=self.limit),
                                 lambda label, done, total: self.post_message(CompareProgressed(label, done, total)))
            self.post_message(CompareFinished(result))
        except Exception as exc:  # noqa: BLE001  (shown on screen)
            self.post_message(CompareFailed(str(exc)))

    # -- handlers -----------------------------------------------------------------------------
    def on_compare_targets_listed(self, message: CompareTargetsListed) -> None:
        self._targets = message.targets
        selection = self.query_one("#compare-targets", SelectionList)
        selection.clear_options()
        selection.add_options([Selection(t.label, i, i in message.chosen) for i, t in enumerate(message.targets)])
        self._status(f"{len(message.targets)} checkpoints; select 2-{MAX_COMPARED}, `r` compares")
        if self.auto_start and len(message.chosen) >= 2:
            self.action_compare()

    def on_compare_progressed(self, message: CompareProgressed) -> None:
        self._status(f"comparing: {message.label} ({message.done + 1}/{message.total}) ...")

    def on_compare_finished(self, message: CompareFinished) -> None:
        self.running, self.result = False, message.result
        self.query_one("#compare-metrics", Static).update(metrics_table(message.result))
        self.query_one("#compare-outputs", Static).update(outputs_table(message.result, SHOWN_PROMPTS))
        self._status(f"{len(message.result.targets)} targets in {message.result.seconds:.1f} s, "
                     f"{message.result.bases_loaded} base(s) loaded")

    def on_compare_failed(self, message: CompareFailed) -> None:
        self.running = False
        self._status(f"[red]compare failed: {message.error}[/]")

    @on(SelectionList.SelectedChanged, "#compare-targets")
    def _selection_changed(self) -> None:
        if not self.running:
            count = len(self.query_one("#compare-targets", SelectionList).selected)
            self._status(f"{count} selected; select 2-{MAX_COMPARED}, `r` compares")

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A thread worker that crashed outside its own error handling still shows up on screen."""
        if event.state == WorkerState.ERROR:
            self._status(f"[red]{type(event.worker.error).__name__}: {event.worker.error}[/]")

    # -- actions ------------------------------------------------------------------------------
    def action_compare(self) -> None:
        chosen = [self._targets[i] for i in sorted(self.query_one("#compare-targets", SelectionList).selected)]
        if self.running:
            return
        if not 2 <= len(chosen) <= MAX_COMPARED:
            self._status(f"[red]select 2-{MAX_COMPARED} checkpoints (now {len(chosen)})[/]")
            return
        self.running = True
        self._status(f"comparing {', '.join(t.label for t in chosen)} ...")
        self._compare(chosen)

    def action_close(self) -> None:
        if self.running and self._worker is not None:
            self._worker.stop()
        self.app.pop_screen()

    def _status(self, text: str) -> None:
        self.query_one("#compare-status", Static).update(text)
