"""Small modal screens: a yes/no confirmation, one event whole, and the key help."""
from __future__ import annotations

from rich.markup import escape
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Static


class ConfirmScreen(ModalScreen[bool]):
    """Asks one question; y confirms, n or Esc declines."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
        Binding("left,h", "app.focus_previous", show=False),
        Binding("right,l", "app.focus_next", show=False),
    ]

    def __init__(self, question: str, yes: str = "Yes"):
        super().__init__()
        self.question, self.yes = question, yes

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-dialog"):
            yield Static(escape(self.question), id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.yes}  y", id="yes", variant="error")
                yield Button("Cancel  n", id="no")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class EventDetailScreen(ModalScreen[None]):
    """One event whole: its kind, stage, step and time, its line, and every field it carries."""

    BINDINGS = [Binding("escape,enter", "close", "Close")]

    def __init__(self, title: str, text: str):
        super().__init__()
        self.title_text, self.text = title, text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="event-dialog"):
            yield Static(self.text, id="event-text", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#event-dialog").border_title = self.title_text
        self.query_one("#event-dialog").border_subtitle = "Esc closes"

    def action_close(self) -> None:
        self.dismiss(None)


KEYS = [
    ("Anywhere", [("q", "detach: leave the cockpit, training keeps running"), ("?", "this help"),
                  ("Ctrl+P", "every action of the screen, searchable by name"),
                  ("Tab / Shift+Tab", "next / previous panel")]),
    ("Runs", [("↑ ↓ / j k", "move"), ("Enter", "attach to the run"), ("n", "start a new demo run"),
              ("r", "refresh now")]),
    ("Run", [("↑ ↓ / j k", "pick a stage (its log is shown)"),
             ("Enter", "open the stage: its settings, gate, metrics,"),
             ("", "checkpoints, failure (a pending gate: its dialog)"),
             ("[ ]  1–9", "previous / next metric, or pick one"),
             ("e  l  y", "chart: smoothing, log y, y scale per stage / shared"),
             ("x  then ← →", "step cursor on the chart; its title reads the value"),
             ("z", "zoom: the chart full screen (the log or events when focused); z again restores"),
             ("g", "open the pending gate"),
             ("o", "rollouts of the stage (grpo): prompts, tool calls, rewards"),
             ("c", "chat with a checkpoint of the run"), ("m", "compare checkpoints on the same prompts"),
             ("s", "stop the run (asks first)"), ("/", "filter the log; Esc clears"),
             ("f", "pin the log to its stage / follow the run"),
             ("Tab to events", "↑ ↓ / j k move the cursor, Enter: the event whole"),
             ("Esc", "back to the runs list")]),
    ("Stage", [("↑ ↓ / j k", "scroll"), ("Esc", "back to the run")]),
    ("Gate", [("a", "approve"), ("r", "reject"), ("n", "type a note"), ("Esc", "decide later")]),
    ("Rollouts", [("[ ]  ← →", "older / newer step"), ("Home", "newest step"), ("↑ ↓ / j k", "scroll"),
                  ("Esc", "back to the run")]),
]


class HelpScreen(ModalScreen[None]):
    """Every key of the cockpit, by screen."""

    BINDINGS = [Binding("escape,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog"):
            yield Static(help_text(), id="help-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#help-dialog").border_title = "Keys"
        self.query_one("#help-dialog").border_subtitle = "Esc closes"

    def action_close(self) -> None:
        self.dismiss(None)


def help_text() -> str:
    lines = []
    for section, keys in KEYS:
        lines.append(f"[b $accent]{section}[/]")
        lines += [f"  [b]{escape(k):<16}[/] {escape(what)}" for k, what in keys]
        lines.append("")
    lines.append("[dim]Closing or killing the cockpit never stops training; `cockpit attach RUN` brings it back.[/]")
    return "\n".join(lines)
