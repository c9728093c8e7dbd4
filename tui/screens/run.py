"""The run screen: curriculum, live charts, hardware, events and the worker log of one run."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input
from textual.worker import Worker, WorkerState, get_current_worker

from core.events import CHART_METRICS, RUN_LIVE, Decision
from core.runs import RunPaths
from core.store import RunStore
from tui.chart_scale import reward_part
from tui.format import metric_label
from tui.log_lines import log_title
from tui.poller import RunPoller
from tui.screens.dialogs import ConfirmScreen, EventDetailScreen
from tui.screens.gate import GateDecision, GateScreen
from tui.state import RunSnapshot
from tui.widgets.chart import ChartData, MetricChart
from tui.widgets.curriculum import CurriculumPanel
from tui.widgets.logs import EventList, LogTail
from tui.widgets.panels import HardwarePanel, MetricPicker, RunHeader

LIVE_POLL_S = 0.05      # at most ~20 screen updates a second: write->screen p99 under 100 ms
FINISHED_POLL_S = 2.0   # a finished run changes rarely (a resume); keep idle CPU near zero
APPLY_WAIT_S = 1.0      # the poller waits this long for the screen to take the last snapshot


@dataclass(frozen=True)
class PollerControl:
    """Signals between the screen and its poller thread: wake it now; the last snapshot was applied."""

    wake: threading.Event
    applied: threading.Event


class RunScreen(Screen):
    """Everything about one run, live; leaving it never touches the run."""

    BINDINGS = [
        Binding("question_mark", "app.help", "Help", key_display="?"),  # first: 80 columns cut the footer's end
        Binding("q", "app.detach", "Detach (run continues)"),
        Binding("s", "stop", "Stop run"),
        Binding("g", "gate", "Gate"),
        Binding("o", "rollouts", "Rollouts"),
        Binding("c", "chat", "Chat", show=False),
        Binding("m", "compare", "Compare", show=False),
        Binding("left_square_bracket", "cycle_metric(-1)", "Metric", key_display="["),
        Binding("right_square_bracket", "cycle_metric(1)", "Metric", key_display="]", show=False),
        Binding("slash", "filter_log", "Filter log", key_display="/"),
        Binding("f", "follow_log", "Pin/follow log", show=False),
        Binding("escape", "back", "Runs"),
        Binding("e", "chart('smooth')", "Chart: smooth (EMA)", show=False),
        Binding("l", "chart('log')", "Chart: log y", show=False),
        Binding("y", "chart('per_stage')", "Chart: y scale per stage / shared", show=False),
        Binding("x", "chart_cursor", "Chart: step cursor (← →)", show=False),
        Binding("z", "zoom", "Zoom: chart, log or events full screen", show=False),
        *[Binding(str(n), f"pick_metric({n - 1})", show=False) for n in range(1, 10)],
    ]

    class SnapshotTaken(Message):
        """The poller folded new rows; the screen applies this picture in one batch."""

        def __init__(self, snapshot: RunSnapshot):
            super().__init__()
            self.snapshot = snapshot

    class DecisionSent(Message):
        """A gate decision reached the store."""

        def __init__(self, decision: GateDecision):
            super().__init__()
            self.decision = decision

    class StopSent(Message):
        """The stop command reached the store."""

    def __init__(self, paths: RunPaths, **kwargs):
        super().__init__(**kwargs)
        self.paths = paths
        self.snapshot: RunSnapshot | None = None
        self.metric = "loss"
        self.follow: str | None = None  # the stage the log is pinned to; None follows the running stage
        self.applied_count = 0
        self.on_applied: Callable[[RunSnapshot], None] | None = None  # benchmarks hook here
        self._control = PollerControl(threading.Event(), threading.Event())
        self._prompted: set[int] = set()

    def compose(self) -> ComposeResult:
        yield RunHeader("[b]" + self.paths.id + "[/]", id="run-header")
        with Horizontal(id="top"):
            yield CurriculumPanel(id="curriculum")
            yield HardwarePanel("[dim]no hardware sample yet[/]", id="hardware")
        with Vertical(id="chart-box"):
            yield MetricPicker(id="metric-picker")
            yield MetricChart(id="chart")
        with Horizontal(id="bottom"):
            yield EventList(id="events")
            with Vertical(id="log-box"):
                yield Input(placeholder="filter the log (Enter keeps it, Esc clears)", id="log-filter")
                yield LogTail(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#curriculum").border_title = "Curriculum"
        self.query_one("#hardware").border_title = "Hardware"
        self.query_one("#chart-box").border_title = "Metrics"
        self.query_one("#events").border_title = "Events"
        self.query_one("#log-box").border_title = "Log"
        self.query_one("#log-filter", Input).cursor_blink = self.app.blink
        self.query_one(CurriculumPanel).focus()
        self._ticker = self.set_interval(1.0, self._tick, pause=True)  # runs while the run is live
        self._read_store()

    def on_resize(self) -> None:
        self.set_class(self.size.width < 100 or self.size.height < 30, "-compact")
        self.query_one(CurriculumPanel).headed = self.size.height >= 30  # its row goes to the chart

    def on_unmount(self) -> None:
        self.workers.cancel_group(self, "poll")
        self._control.wake.set()
        self._control.applied.set()

    # -- reading ------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="poll", exit_on_error=False, description="reading the run store")
    def _read_store(self) -> None:
        worker = get_current_worker()
        poller = RunPoller(self.paths)
        control = self._control
        try:
            while not worker.is_cancelled:
                started = time.monotonic()
                poller.follow = self.follow
                snapshot = poller.poll()
                if snapshot is not None:
                    control.applied.clear()
                    self.post_message(self.SnapshotTaken(snapshot))
                    control.applied.wait(APPLY_WAIT_S)  # coalesce: never queue more than one picture
                if poller.behind:
                    continue
                pause = FINISHED_POLL_S if poller.finished else LIVE_POLL_S
                control.wake.wait(max(pause - (time.monotonic() - started), 0.0))
                control.wake.clear()
        finally:
            poller.close()

    @on(SnapshotTaken)
    def _apply(self, message: SnapshotTaken) -> None:
        snap = message.snapshot
        with self.app.batch_update():
            self.snapshot = snap
            self._draw(snap)
        self.applied_count += 1
        self._control.applied.set()
        if self.on_applied is not None:
            self.call_after_refresh(self.on_applied, snap)
        self._offer_gate(snap)

    def _draw(self, snap: RunSnapshot) -> None:
        live = snap.status in RUN_LIVE
        if live:
            self._ticker.resume()
        else:
            self._ticker.pause()
        self.query_one(RunHeader).show(snap, self.app.clock())
        self.query_one(CurriculumPanel).show(snap)
        self.query_one(HardwarePanel).show(snap.hardware, live)
        self._draw_chart()
        self.query_one(EventList).show(snap)
        self.query_one(LogTail).show(snap)
        self._retitle_log()

    def _retitle_log(self) -> None:
        stage = self.snapshot.log_stage if self.snapshot else None
        _retitle(self.query_one("#log-box"), log_title(self.follow or stage, self.follow is not None))

    def _draw_chart(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        names = self.metric_names()
        series = snap.series_named(self.metric)
        available = {s.name for s in snap.series if s.xs}
        self.query_one(MetricPicker).show(names, self.metric, available)
        thresholds = tuple(t for t in snap.thresholds if t.metric == self.metric)
        parts = tuple(s for s in snap.series if reward_part(s.name)) if self.metric == "reward" else ()
        chart = self.query_one(MetricChart)
        chart.show(ChartData(self.metric, series, snap.stages, thresholds, parts))
        box = self.query_one("#chart-box")
        _retitle(box, chart.title(metric_label(self.metric), snap.running_stage))
        caption = chart.caption(zoomed=self.maximized is box)
        if box.border_subtitle != caption:
            box.border_subtitle = caption

    def metric_names(self) -> list[str]:
        """The six training metrics, then every eval metric seen so far (reward parts are drawn under reward)."""
        seen = sorted(s.name for s in (self.snapshot.series if self.snapshot else ())
                      if s.name not in CHART_METRICS and not reward_part(s.name))
        return list(CHART_METRICS) + seen

    def _tick(self) -> None:
        if self.snapshot is not None:
            self.query_one(RunHeader).show(self.snapshot, self.app.clock())

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.notify(f"{event.worker.description}: {event.worker.error}", title="Error", severity="error",
                        timeout=10)

    # -- gate ---------------------------------------------------------------------------------
    def _offer_gate(self, snap: RunSnapshot) -> None:
        """Open the gate prompt once per pending manual gate, when this screen is on top."""
        gate = snap.gate
        if gate is None or gate.approval != "manual" or gate.decision_sent or gate.event_id in self._prompted:
            return
        if self.app.screen is self:
            self._prompted.add(gate.event_id)
            self.action_gate()

    def on_screen_resume(self) -> None:
        if self.snapshot is not None:
            self._offer_gate(self.snapshot)

    def action_gate(self) -> None:
        snap = self.snapshot
        if snap is None or snap.gate is None:
            self.notify("No gate is waiting for a decision.", timeout=3)
            return
        if snap.gate.approval != "manual":
            self.notify(f"The {snap.gate.stage} gate decides by its rules (auto).", timeout=3)
            return
        self.app.push_screen(GateScreen(snap.gate, snap, self.paths), self._gate_closed)

    def _gate_closed(self, decision: GateDecision | None) -> None:
        if decision is not None:
            self._send_decision(decision)

    @work(thread=True, group="write", exit_on_error=False, description="sending the gate decision")
    def _send_decision(self, decision: GateDecision) -> None:
        with RunStore(self.paths.db) as store:
            store.decide(decision.stage, decision.decision, by=self.app.user_tag, note=decision.note or None)
        self.post_message(self.DecisionSent(decision))
        self._control.wake.set()

    @on(DecisionSent)
    def _decision_sent(self, message: DecisionSent) -> None:
        d = message.decision
        note = f" — {d.note}" if d.note else ""
        self.query_one(EventList).note(f"{d.stage}: {d.decision} sent by {self.app.user_tag}{note}",
                                       "good" if d.decision == Decision.APPROVE else "warn")

    # -- stop, metrics, filter, navigation ----------------------------------------------------
    @on(EventList.Chosen)
    def _event_chosen(self, message: EventList.Chosen) -> None:
        with RunStore(self.paths.db) as store:
            found = store.events(after_id=message.event_id - 1, limit=1, include_superseded=True)
        if found and found[0].id == message.event_id:
            self.app.push_screen(EventDetailScreen(*event_detail(found[0])))

    def action_stop(self) -> None:
        question = f"Stop run {self.paths.id}?\nThe running stage is stopped and the run ends; checkpoints stay."
        self.app.push_screen(ConfirmScreen(question, yes="Stop run"), self._stop_confirmed)

    def _stop_confirmed(self, confirmed: bool | None) -> None:
        if confirmed:
            self._send_stop()

    @work(thread=True, group="write", exit_on_error=False, description="sending stop")
    def _send_stop(self) -> None:
        with RunStore(self.paths.db) as store:
            store.command("stop", by="tui")
        self.post_message(self.StopSent())

    @on(StopSent)
    def _stop_sent(self) -> None:
        self.query_one(EventList).note("stop requested; the supervisor stops the run", "warn")
        self.notify("Stop requested.", timeout=3)

    def action_cycle_metric(self, delta: int) -> None:
        names = self.metric_names()
        self.metric = names[(names.index(self.metric) + delta) % len(names)] if self.metric in names else names[0]
        self._draw_chart()

    def action_pick_metric(self, index: int) -> None:
        names = self.metric_names()
        if index < len(names):
            self.metric = names[index]
            self._draw_chart()

    def action_chart(self, option: str) -> None:
        """Flip a chart option: smoothing, log y, one y axis per stage."""
        self.query_one(MetricChart).toggle(option)

    def action_chart_cursor(self) -> None:
        """Give the chart the keys (← → move a step cursor), or take them back."""
        chart = self.query_one(MetricChart)
        if chart.has_focus:
            self.query_one(CurriculumPanel).focus()
        else:
            chart.focus()

    def action_zoom(self) -> None:
        """The chart full screen (the log or events instead when one has focus); again to restore."""
        if self.maximized is not None:
            self.minimize()
        else:
            focused = self.focused
            panel = next((p for p in (self.query_one("#log-box"), self.query_one("#events"))
                          if focused is not None and (focused is p or p in focused.ancestors)), None)
            self.maximized = panel or self.query_one("#chart-box")
        self._draw_chart()

    @on(MetricChart.ViewChanged)
    def _chart_view_changed(self) -> None:
        self._draw_chart()

    @on(CurriculumPanel.StageChosen)
    def _stage_chosen(self, message: CurriculumPanel.StageChosen) -> None:
        gate = self.snapshot.gate if self.snapshot else None
        if message.pressed and gate is not None and gate.stage == message.stage:
            self.action_gate()
            return
        self.follow = message.stage  # choosing a stage pins the log to it; `f` follows the run again
        self._retitle_log()
        self._control.wake.set()
        if message.pressed:
            from tui.screens.stage_detail import StageDetailScreen
            self.app.push_screen(StageDetailScreen(self.paths, message.stage))

    def action_chat(self) -> None:
        from tui.chat_screen import ChatScreen
        panel = self.query_one(CurriculumPanel)
        self.app.push_screen(ChatScreen(run=self.paths, stage=panel.chosen if panel.rows else None))

    def action_compare(self) -> None:
        from tui.compare_screen import CompareScreen
        self.app.push_screen(CompareScreen(self.paths))

    def action_rollouts(self) -> None:
        from tui.screens.rollouts import RolloutsScreen, pick_stage
        panel = self.query_one(CurriculumPanel)
        stages = panel.snapshot.stages if panel.snapshot else []
        self.app.push_screen(RolloutsScreen(self.paths, pick_stage(stages, panel.chosen if panel.rows else None)))

    def action_follow_log(self) -> None:
        """Pin the log to the stage it shows, or let it follow the running stage again."""
        stage = self.snapshot.log_stage if self.snapshot else None
        self.follow = None if self.follow else stage
        self._retitle_log()
        self._control.wake.set()

    def action_filter_log(self) -> None:
        box = self.query_one("#log-filter", Input)
        box.add_class("-shown")
        box.focus()

    @on(Input.Changed, "#log-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.query_one(LogTail).set_filter(event.value)

    @on(Input.Submitted, "#log-filter")
    def _filter_kept(self) -> None:
        self.query_one(LogTail).focus()

    def action_back(self) -> None:
        box = self.query_one("#log-filter", Input)
        if box.has_class("-shown"):
            box.value = ""
            box.remove_class("-shown")
            self.query_one(LogTail).focus()
            return
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()


def _retitle(widget, title: str) -> None:
    """Set a border title only when it changes (each change repaints the panel)."""
    if widget.border_title != title:
        widget.border_title = title


def event_detail(ev) -> tuple[str, str]:
    """A dialog's title and text for one stored event: where and when, its line, then its fields as YAML."""
    import yaml

    from core.events import describe

    where = " · ".join(filter(None, [ev.stage or "run", f"step {ev.step}" if ev.step is not None else "",
                                     time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ev.ts))]))
    line = describe(ev)[0]
    fields = {k: v for k, v in (({ev.name: ev.value} if ev.name else {}) | (ev.data or {})).items() if v is not None}
    body = yaml.safe_dump(fields, sort_keys=False, allow_unicode=True, width=70).strip() if fields else "(no fields)"
    return f"event {ev.id} · {ev.kind}", f"{where}\n{line}\n\n{body}" if line else f"{where}\n\n{body}"
