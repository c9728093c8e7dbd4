"""The gate prompt: each rule as measured, the metric across earlier stages, a few eval answers; approve, reject
or chat with the checkpoint first."""
from __future__ import annotations

from dataclasses import dataclass

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Static

from core.events import Decision
from core.run_state import EvalExample, GateView, StageView
from core.runs import RunPaths
from core.status import delta_text, verdict
from tui.format import short_number
from tui.state import RunSnapshot
from tui.widgets.curriculum import delta_markup


@dataclass(frozen=True)
class GateDecision:
    """What the operator decided at a gate, with an optional note."""

    stage: str
    decision: Decision
    note: str


class GateScreen(ModalScreen[GateDecision | None]):
    """Asks for a decision on one pending manual gate; Esc leaves it pending."""

    BINDINGS = [
        Binding("a", "decide('approve')", "Approve"),
        Binding("r", "decide('reject')", "Reject"),
        Binding("n", "note", "Note"),
        Binding("c", "chat", "Chat with it"),
        Binding("escape", "later", "Later"),
        Binding("left,h", "app.focus_previous", show=False),
        Binding("right,l", "app.focus_next", show=False),
    ]

    def __init__(self, gate: GateView, snapshot: RunSnapshot, run: RunPaths):
        super().__init__()
        self.gate, self.snapshot, self.run = gate, snapshot, run

    def compose(self) -> ComposeResult:
        gate = self.gate
        with Vertical(id="gate-dialog"):
            verdict = "[b $success]all rules pass[/]" if gate.passed else "[b $error]some rules fail[/]"
            yield Static(f"Stage [b]{escape(gate.stage)}[/] finished; its gate waits for you. Rules: {verdict}",
                         id="gate-summary")
            yield Static(rules_table(gate), id="gate-rules")
            yield Static(history_table(gate, [s.name for s in self.snapshot.stages],
                                       self.snapshot.stage_named(gate.stage)), id="gate-history")
            shown = 4 if self.app.size.height >= 30 else 2  # 80x24 keeps the buttons in view
            yield Static(examples_text(self.snapshot.stage_named(gate.stage), shown), id="gate-examples")
            yield Input(placeholder="note (optional) — n to type, Enter when done", id="gate-note")
            with Horizontal(id="gate-buttons"):
                yield Button("Approve  a", id="approve", variant="success")
                yield Button("Reject  r", id="reject", variant="error")
                yield Button("Later  Esc", id="later")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#gate-dialog").border_title = f"Gate · {self.gate.stage}"
        self.query_one("#gate-note", Input).cursor_blink = self.app.blink
        self.query_one("#approve", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "later":
            self.dismiss(None)
        else:
            self.action_decide(event.button.id or "")

    @on(Input.Submitted, "#gate-note")
    def _note_done(self) -> None:
        self.query_one("#approve", Button).focus()

    def action_note(self) -> None:
        self.query_one("#gate-note", Input).focus()

    def action_chat(self) -> None:
        """Talk to the gated checkpoint before deciding; closing the chat comes back here."""
        from tui.chat_screen import ChatScreen
        self.app.push_screen(ChatScreen(run=self.run, stage=self.gate.stage))

    def action_decide(self, decision: str) -> None:
        note = self.query_one("#gate-note", Input).value.strip()
        self.dismiss(GateDecision(self.gate.stage, Decision(decision), note))

    def action_later(self) -> None:
        self.dismiss(None)


def examples_text(stage: StageView | None, shown: int = 4) -> str:
    """A few held-out answers of the stage's eval, wrong ones first: prompt, output, expected."""
    if not stage or not stage.examples:
        return "[dim]no eval answers recorded[/]"
    picked = _picked(stage.examples, shown)
    prompts = [_one_line(e.prompt, 30) for e in picked]
    width = max(map(len, prompts))
    lines = ["[b]eval answers[/] [dim](a few of the held-out set, wrong ones first)[/]"]
    for e, prompt in zip(picked, prompts):
        mark = "[$success]✓[/]" if e.correct else "[$error]✗[/]"
        expected = "" if e.correct else f"  [dim]expected {escape(e.answer)}[/]"
        lines.append(f"{mark} {escape(prompt.ljust(width))} → {escape(_one_line(e.output, 30))}{expected}")
    return "\n".join(lines)


def _picked(examples: tuple[EvalExample, ...], shown: int) -> list[EvalExample]:
    """Half wrong and half right where both exist, else more of the kind there is; wrong ones first."""
    wrong = [e for e in examples if not e.correct]
    right = [e for e in examples if e.correct]
    n_wrong = min(len(wrong), max(shown // 2, shown - len(right)))
    return wrong[:n_wrong] + right[:shown - n_wrong]


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def rules_table(gate: GateView) -> str:
    """One line per rule: metric, rule, measured value, threshold, pass/fail."""
    head = f"[b]{'metric':<18} {'rule':<16} {'measured':>9} {'threshold':>9}  result[/]"
    lines = [head]
    for rule in gate.rules:
        mark = "[b $success]✓ pass[/]" if rule.passed else "[b $error]✗ fail[/]"
        lines.append(f"{escape(rule.metric[:18]):<18} {escape(rule.rule[:16]):<16} {short_number(rule.value):>9} "
                     f"{short_number(rule.threshold):>9}  {mark}")
    if not gate.rules:
        lines.append("[dim]no rules: the decision is yours alone[/]")
    return "\n".join(lines)


def history_table(gate: GateView, order: list[str], stage: StageView | None) -> str:
    """The gated metrics across the stages so far, in curriculum order, with the change against the parent."""
    if not gate.history:
        return "[dim]no earlier values[/]"
    stages = [s for s in order if any(s == st for _, vals in gate.history for st, _ in vals)]
    parent = stage.from_stage if stage else None
    change_head = f" {escape('Δ vs ' + parent[:9]):>14}" if parent else ""
    lines = [f"[b]{'metric':<18}" + "".join(f" {s[:9]:>9}" for s in stages) + change_head + "[/]"]
    for metric, values in gate.history:
        by_stage = dict(values)
        cells = "".join(f" {short_number(by_stage.get(s)):>9}" if s != gate.stage
                        else f" [b]{short_number(by_stage.get(s)):>9}[/]" for s in stages)
        lines.append(f"{escape(metric[:18]):<18}{cells}{_change_cell(stage, metric) if parent else ''}")
    metrics = [metric for metric, _ in gate.history]
    return "\n".join(lines + _not_comparable(stage, metrics) + _regressions(stage, metrics))


def _change_cell(stage: StageView, metric: str) -> str:
    """The stage's change in `metric` against its parent, coloured; n/c when measured differently."""
    change = stage.delta(metric)
    if change is None:
        return f" {'-':>14}"
    if change.value is None:
        return f" [dim]{'n/c':>14}[/]"
    return " " + delta_markup(metric, change.value, f"{delta_text(metric, change.value):>14}")


def _not_comparable(stage: StageView | None, metrics: list[str]) -> list[str]:
    """Why a gated metric has no change against the parent (measured in different formats)."""
    reasons = [(m, d.reason) for m in metrics if stage and (d := stage.delta(m)) and d.reason]
    return [f"[dim]{escape(metric)} n/c: {escape(reason)}[/]" for metric, reason in reasons]


def _regressions(stage: StageView | None, metrics: list[str]) -> list[str]:
    """A warning line for each gated metric on which the stage did worse than its parent."""
    worse = [(m, d.value) for m in metrics if stage and (d := stage.delta(m)) and d.value is not None
             and verdict(m, d.value) == "worse"]
    return [f"[$warning]⚠ {escape(stage.name)} is worse than its parent {escape(stage.from_stage or '')} on "
            f"{escape(metric)}: {delta_text(metric, value)}[/]" for metric, value in worse]
