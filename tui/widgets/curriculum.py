"""The curriculum: every stage as a tree (branches indented), with its kind, origin, status, progress and gate."""
from __future__ import annotations

from rich.markup import escape
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from core.dag import TreeRow, tree_rows
from core.events import STAGE_ENDED_BADLY, STAGE_OK, StageStatus
from core.kinds import KINDS
from core.run_state import StageView
from core.status import verdict
from core.units import duration
from tui.format import bar, status_look
from tui.state import RunSnapshot

VERDICT_LOOK = {"better": "$success", "worse": "$error", "same": ""}


class CurriculumPanel(Widget, can_focus=True):
    """One line per stage, drawn as a tree; a cursor (j/k, arrows) moves down the lines and picks the stage whose
    log is shown."""

    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("enter", "choose", "Open stage", show=False),
    ]
    cursor: reactive[int] = reactive(0)
    headed: reactive[bool] = reactive(True, layout=True)  # the column names; short screens leave them out

    class StageChosen(Message):
        """The operator moved to (or pressed Enter on) a stage."""

        def __init__(self, stage: str, pressed: bool):
            super().__init__()
            self.stage, self.pressed = stage, pressed

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.snapshot: RunSnapshot | None = None
        self.rows: list[TreeRow] = []  # the stages in drawing order; the cursor indexes these
        self._placed = False

    def show(self, snapshot: RunSnapshot) -> None:
        if self.snapshot is not None and snapshot.stages == self.snapshot.stages and snapshot.gate == self.snapshot.gate:
            return
        grew = self.snapshot is None or len(snapshot.stages) != len(self.snapshot.stages)
        self.snapshot = snapshot
        if grew:
            self.rows = tree_rows((s.name, s.from_stage, KINDS[s.kind].outputs) for s in snapshot.stages)
        if not self._placed and snapshot.stages:
            active = snapshot.running_stage or snapshot.stages[-1]
            at = next(i for i, row in enumerate(self.rows) if row.index == snapshot.stages.index(active))
            self.set_reactive(CurriculumPanel.cursor, at)
            self._placed = True
        self.refresh(layout=grew)  # a relayout only when the number of rows changes

    def get_content_height(self, container, viewport, width: int) -> int:
        return int(self.headed) + len(self.snapshot.stages) if self.snapshot else 1

    def render(self) -> str:
        snap = self.snapshot
        if snap is None:
            return "[dim]reading the run store…[/]"
        wide = self.size.width >= 76
        head = "   [b]stage[/]      [b]kind[/]     [b]from[/]       [b]status[/]        [b]progress[/]" if wide \
            else "   [b]stage[/]      [b]status[/]        [b]progress[/]"
        lines = [head] if self.headed else []
        decision = snap.gate.decision_sent if snap.gate else None
        steps_w = max((len(_steps_done(s)) for s in snap.stages if s.status in STAGE_OK), default=0)
        for i, row in enumerate(self.rows):
            lines.append(self._line(snap.stages[row.index], row.prefix, i == self.cursor and self.has_focus,
                                    i == self.cursor, wide, decision, steps_w))
        return "\n".join(lines)

    def _line(self, stage: StageView, prefix: str, focused: bool, current: bool, wide: bool, decision: str | None,
              steps_w: int) -> str:
        glyph, words, style = status_look(stage.status)
        pointer = "[reverse]›[/]" if focused else ("›" if current else " ")
        prefix = prefix[-8:]  # deep trees keep their last levels
        name = (f"[dim]{prefix}[/]" if prefix else "") + escape(stage.name[:10 - len(prefix)]).ljust(10 - len(prefix))
        status = f"[{style}]{glyph} {words:<12}[/]" if style else f"{glyph} {words:<12}"
        room = self.size.width - (48 if wide else 28)
        progress = _finished_text(stage, room, steps_w) if stage.status in STAGE_OK else \
            progress_text(stage, decision, room)
        if wide:
            origin = escape((stage.from_stage or "—")[:10]).ljust(10)
            return f"{pointer} {name} {stage.kind:<8} {origin} {status} {progress}"
        return f"{pointer} {name} {status} {progress}"

    def watch_cursor(self) -> None:
        self.refresh()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def action_move(self, delta: int) -> None:
        if not self.snapshot or not self.snapshot.stages:
            return
        self.cursor = (self.cursor + delta) % len(self.rows)
        self.post_message(self.StageChosen(self.chosen, pressed=False))

    def action_choose(self) -> None:
        if self.snapshot and self.snapshot.stages:
            self.post_message(self.StageChosen(self.chosen, pressed=True))

    @property
    def chosen(self) -> str:
        """The name of the stage under the cursor."""
        return self.snapshot.stages[self.rows[self.cursor].index].name


def progress_text(stage: StageView, decision: str | None, room: int) -> str:
    """What the progress column says for a stage in its current state."""
    total, step = stage.total_steps, stage.step
    gate = f" [dim]gate: {stage.approval}[/]" if stage.approval and room > 34 else ""
    if stage.status == StageStatus.RUNNING:
        if not total:
            return "working…"
        width = max(min(room - 24, 16), 4)
        counts = f"{step or 0}/{total}"
        eta = f" ETA {duration(stage.eta_s)}" if stage.eta_s is not None else ""
        if len(counts) + len(eta) > room:
            eta = ""
        attempt = f" [$warning]try {stage.attempt}[/]" if stage.attempt > 1 and room > 40 else ""
        if width + 1 + len(counts) + len(eta) > room:  # a narrow panel: the bar goes before the row wraps
            return f"{counts}{eta}{attempt}"
        return f"[$accent]{bar((step or 0) / total, width)}[/] {counts}{eta}{attempt}"
    if stage.status == StageStatus.GATE_PENDING:
        if decision:
            return f"[$warning]{decision} sent, waiting for supervisor[/]"
        if stage.approval == "manual":
            return f"[bold $warning]{'awaiting your approval — press g' if room >= 32 else 'press g to decide'}[/]"
        return "checking gate…"
    if stage.status == StageStatus.SKIPPED:
        return f"[dim]{escape((stage.reason or '')[:max(room, 0)])}[/]"
    if stage.status in STAGE_ENDED_BADLY:
        return f"[$error]{escape((stage.reason or '')[:max(room, 0)])}[/]"
    return (f"[dim]{total} steps[/]" if total else "") + gate


def _steps_done(stage: StageView) -> str:
    """'800/800' for a finished stage, 'done' for one without steps (merge)."""
    return f"{stage.step}/{stage.total_steps}" if stage.total_steps else "done"


def _finished_text(stage: StageView, room: int, steps_w: int) -> str:
    """Steps done, then the final accuracy with its change against the parent, then the gate, as room allows."""
    steps = f"[dim]{_steps_done(stage):<{steps_w}}[/]"
    if steps_w + 13 > room:  # no room for both: the accuracy says more than the step count
        return _score(stage) if stage.accuracy is not None and room >= 12 else steps
    text = f"{steps} {_score(stage)}"
    if stage.approval and room > 34 and steps_w + 20 + len(stage.approval) <= room:
        text += f" [dim]gate: {stage.approval}[/]"
    return text


def _score(stage: StageView) -> str:
    """' 92.0% +91.6' (the change coloured), '  n/c' when the parent measured it differently; always 12 cells."""
    if stage.accuracy is None:
        return " " * 12
    change = stage.delta("eval/accuracy")
    if change is None:
        shown = " " * 5
    elif change.value is None:
        shown = "[dim]  n/c[/]"
    else:
        shown = delta_markup("eval/accuracy", change.value, f"{change.value * 100:+5.1f}")
    return f"{stage.accuracy:>6.1%} {shown}"


def delta_markup(metric: str, delta: float, text: str) -> str:
    """`text` (a change of `delta` in `metric`) coloured as an improvement or a regression."""
    look = VERDICT_LOOK[verdict(metric, delta)]
    return f"[{look}]{text}[/]" if look else text
