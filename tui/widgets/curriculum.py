"""The curriculum: every stage in order, with its kind, origin, status, progress and gate."""
from __future__ import annotations

from rich.markup import escape
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget

from tui.format import bar, duration, status_look
from tui.state import RunSnapshot, StageView


class CurriculumPanel(Widget, can_focus=True):
    """One line per stage; a cursor (j/k, arrows) picks the stage whose log is shown."""

    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("enter", "choose", "Open stage", show=False),
    ]
    cursor: reactive[int] = reactive(0)

    class StageChosen(Message):
        """The operator moved to (or pressed Enter on) a stage."""

        def __init__(self, stage: str, pressed: bool):
            super().__init__()
            self.stage, self.pressed = stage, pressed

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.snapshot: RunSnapshot | None = None
        self._placed = False

    def show(self, snapshot: RunSnapshot) -> None:
        if self.snapshot is not None and snapshot.stages == self.snapshot.stages and snapshot.gate == self.snapshot.gate:
            return
        grew = self.snapshot is None or len(snapshot.stages) != len(self.snapshot.stages)
        self.snapshot = snapshot
        if not self._placed and snapshot.stages:
            active = snapshot.running_stage or snapshot.stages[-1]
            self.set_reactive(CurriculumPanel.cursor, active.idx if active else 0)
            self._placed = True
        self.refresh(layout=grew)  # a relayout only when the number of rows changes

    def get_content_height(self, container, viewport, width: int) -> int:
        return 1 + len(self.snapshot.stages) if self.snapshot else 1

    def render(self) -> str:
        snap = self.snapshot
        if snap is None:
            return "[dim]reading the run store…[/]"
        wide = self.size.width >= 76
        head = "   [b]stage[/]      [b]kind[/]     [b]from[/]       [b]status[/]        [b]progress[/]" if wide \
            else "   [b]stage[/]      [b]status[/]        [b]progress[/]"
        lines = [head]
        decision = snap.gate.decision_sent if snap.gate else None
        for i, stage in enumerate(snap.stages):
            lines.append(self._line(stage, i == self.cursor and self.has_focus, i == self.cursor, wide, decision))
        return "\n".join(lines)

    def _line(self, stage: StageView, focused: bool, current: bool, wide: bool, decision: str | None) -> str:
        glyph, words, style = status_look(stage.status)
        pointer = "[reverse]›[/]" if focused else ("›" if current else " ")
        name = escape(stage.name[:10]).ljust(10)
        status = f"[{style}]{glyph} {words:<12}[/]" if style else f"{glyph} {words:<12}"
        room = self.size.width - (48 if wide else 29)
        progress = _progress_text(stage, decision, room)
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
        self.cursor = (self.cursor + delta) % len(self.snapshot.stages)
        self.post_message(self.StageChosen(self.snapshot.stages[self.cursor].name, pressed=False))

    def action_choose(self) -> None:
        if self.snapshot and self.snapshot.stages:
            self.post_message(self.StageChosen(self.snapshot.stages[self.cursor].name, pressed=True))


def _progress_text(stage: StageView, decision: str | None, room: int) -> str:
    """What the progress column says for a stage in its current state."""
    total, step = stage.total_steps, stage.step
    gate = f" [dim]gate: {stage.approval}[/]" if stage.approval and room > 34 else ""
    if stage.status == "running":
        if not total:
            return "working…"
        width = max(min(room - 24, 16), 4)
        eta = f" ETA {duration(stage.eta_s)}" if stage.eta_s is not None else ""
        attempt = f" [$warning]try {stage.attempt}[/]" if stage.attempt > 1 and room > 40 else ""
        return f"[$accent]{bar((step or 0) / total, width)}[/] {step or 0}/{total}{eta}{attempt}"
    if stage.status == "gate_pending":
        if decision:
            return f"[$warning]{decision} sent, waiting for supervisor[/]"
        if stage.approval == "manual":
            return "[bold $warning]awaiting your approval — press g[/]"
        return "checking gate…"
    if stage.status in ("failed", "rejected", "gate_failed", "stopped", "interrupted"):
        return f"[$error]{escape((stage.reason or '')[:max(room, 0)])}[/]"
    if stage.status in ("passed", "completed"):
        done = f"{step}/{total}" if total else "done"
        return f"[dim]{done}[/]{gate}"
    return (f"[dim]{total} steps[/]" if total else "") + gate
