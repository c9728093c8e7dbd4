"""The chat pane: talk to any checkpoint of the run through the chat worker, tokens streaming in.

All blocking work (starting the worker, loading a target, generating) runs in thread workers that
only post messages; handlers on the event loop own the widgets. Works while the run trains: the
model lives in the chat worker process, turns are recorded in the run store (WAL).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.worker import Worker, WorkerState
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from core.chat_client import TEXT_MODEL_NOTE, ChatSession, ChatWorker, GenerationSettings, Reply
from core.runs import RunPaths
from core.targets import Target, run_targets

STREAM_FLUSH_S = 0.03  # coalesce streamed text into at most ~30 screen updates a second


@dataclass
class ChatTargetsListed(Message):
    """The targets the chat can switch to, and the one it talks to now."""

    targets: list[Target]
    current: Target


@dataclass
class TargetLoaded(Message):
    target: Target
    load_s: float
    reused_base: bool
    text_model: bool
    experts: list[str] = field(default_factory=list)


@dataclass
class TextArrived(Message):
    text: str


@dataclass
class ReplyFinished(Message):
    reply: Reply


@dataclass
class ChatFailed(Message):
    error: str


class ChatScreen(Screen):
    """Conversation with one target at a time; pick another checkpoint from the list on the left."""

    DEFAULT_CSS = """
    ChatScreen #chat-targets { width: 28; height: 1fr; border: round $primary; }
    ChatScreen #chat-log { height: 1fr; border: round $primary; }
    ChatScreen .turn-user { color: $accent; margin-top: 1; }
    ChatScreen .turn-assistant { padding-left: 2; }
    ChatScreen #chat-status { height: 1; color: $text-muted; }
    ChatScreen #chat-settings { height: 3; }
    ChatScreen #chat-settings Input { width: 1fr; border-title-color: $text-muted; }
    ChatScreen #system { width: 3fr; }
    """
    BINDINGS = [("escape", "stop_or_close", "stop / close"), ("ctrl+r", "new_conversation", "new conversation"),
                ("ctrl+t", "pick_target", "pick checkpoint")]

    def __init__(self, target: Target | None = None, worker: ChatWorker | None = None, run: RunPaths | None = None,
                 stage: str | None = None, auto_open: bool = True):
        """Chat with `target`, or with a run's stage (its base while the stage has no output yet); `auto_open`
        False: wait for the messages that list and load targets (snapshot tests post them)."""
        super().__init__()
        self.auto_open = auto_open
        self.target, self.run, self.stage = target, run, stage
        self._worker, self._owns_worker = worker, worker is None
        self._session: ChatSession | None = None
        self._targets: list[Target] = []
        self._reply_widget: Static | None = None
        self._reply_text = ""
        self.generating = False
        self.last_reply: Reply | None = None

    def compose(self) -> ComposeResult:
        d = GenerationSettings()
        with Horizontal():
            yield OptionList(id="chat-targets")
            with Vertical():
                yield VerticalScroll(id="chat-log")
                yield Static("loading ...", id="chat-status")
                with Horizontal(id="chat-settings"):
                    yield Input(str(d.temperature), placeholder="temperature", id="temperature")
                    yield Input(str(d.top_p), placeholder="top-p", id="top_p")
                    yield Input(str(d.max_new_tokens), placeholder="max new tokens", id="max_new_tokens")
                    yield Input(d.system, placeholder="system prompt", id="system")
                yield Input(placeholder="Ask something (Enter sends, Esc stops)", id="chat-input", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        titles = {"#chat-targets": "checkpoints", "#chat-log": "conversation", "#temperature": "temperature",
                  "#top_p": "top-p", "#max_new_tokens": "max tokens", "#system": "system prompt",
                  "#chat-input": "message"}
        for selector, title in titles.items():
            self.query_one(selector).border_title = title
        self.query_one("#chat-targets").border_subtitle = "Enter loads"
        if self.auto_open:
            self._open()

    def action_pick_target(self) -> None:
        self.query_one("#chat-targets", OptionList).focus()

    def on_unmount(self) -> None:
        if self._owns_worker and self._worker is not None:
            threading.Thread(target=self._worker.close, name="chat-close", daemon=True).start()

    # -- thread workers: they only post messages ----------------------------------------------
    @work(thread=True, exclusive=True, group="chat-load", exit_on_error=False)
    def _open(self) -> None:
        try:
            target = self.target or target_for_stage(self.run, self.stage)
        except Exception as exc:  # noqa: BLE001  (shown on screen)
            self.post_message(ChatFailed(str(exc)))
            return
        paths = target.run_paths
        self.post_message(ChatTargetsListed(run_targets(paths) if paths else [target], target))
        self._load_now(target)

    @work(thread=True, exclusive=True, group="chat-load", exit_on_error=False)
    def _load(self, target: Target) -> None:
        self._load_now(target)

    def _load_now(self, target: Target) -> None:
        """Start the chat worker if needed and load `target` on it (runs in a thread worker)."""
        try:
            if self._worker is None:
                self._worker = ChatWorker().start()
            if self._session is None:
                self._session = ChatSession(self._worker, target)
            loaded = self._session.load(target)
            self.post_message(TargetLoaded(target, loaded["load_s"], loaded["reused_base"], loaded["format"] == "text",
                                            loaded.get("experts") or []))
        except Exception as exc:  # noqa: BLE001  (shown on screen)
            self.post_message(ChatFailed(f"cannot load {target.label}: {exc}"))

    @work(thread=True, exclusive=True, group="chat-generate", exit_on_error=False)
    def _generate(self, text: str, settings: GenerationSettings) -> None:
        pending, last_post = [], time.monotonic()

        def on_text(piece: str) -> None:
            nonlocal last_post
            pending.append(piece)
            if time.monotonic() - last_post >= STREAM_FLUSH_S:
                self.post_message(TextArrived("".join(pending)))
                pending.clear()
                last_post = time.monotonic()

        try:
            reply = self._session.send(text, settings, on_text)
        except Exception as exc:  # noqa: BLE001
            self.post_message(ChatFailed(f"generation failed: {exc}"))
            return
        if pending:
            self.post_message(TextArrived("".join(pending)))
        self.post_message(ReplyFinished(reply))

    # -- handlers: the only code touching widgets ---------------------------------------------
    def on_chat_targets_listed(self, message: ChatTargetsListed) -> None:
        self._targets = message.targets
        options = self.query_one("#chat-targets", OptionList)
        options.clear_options()
        options.add_options([Option(t.label, id=str(i)) for i, t in enumerate(message.targets)])
        self.target = self.target or message.current
        current = [i for i, t in enumerate(message.targets) if t.path == message.current.path]
        if current:
            options.highlighted = current[0]

    def on_target_loaded(self, message: TargetLoaded) -> None:
        self.target = message.target
        self.query_one("#chat-log").border_title = f"conversation · {message.target.label}"
        shared = ", base shared" if message.reused_base else ""
        text = f" · {TEXT_MODEL_NOTE}" if message.text_model else ""
        experts = f" · routes to {', '.join(message.experts)}" if message.experts else ""
        self._status(f"{message.target.label} loaded in {message.load_s:.2f} s{shared}{experts}{text}")
        chat_input = self.query_one("#chat-input", Input)
        chat_input.disabled = False
        chat_input.focus()

    def on_chat_failed(self, message: ChatFailed) -> None:
        self.generating = False
        self._status(f"[red]{message.error}[/]")

    @on(OptionList.OptionSelected, "#chat-targets")
    def _pick_target(self, event: OptionList.OptionSelected) -> None:
        target = self._targets[int(event.option.id)]
        if target.path != self.target.path and not self.generating:
            self._status(f"loading {target.label} ...")
            self._load(target)

    @on(Input.Submitted, "#chat-input")
    def _ask(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if not text or self.generating or self._session is None:
            return
        settings = self._settings()
        if settings is None:
            return
        event.input.value = ""
        self.begin_turn(text)
        self._generate(text, settings)

    def begin_turn(self, text: str) -> None:
        """Show the user's message and an empty reply that the streamed text fills."""
        log = self.query_one("#chat-log", VerticalScroll)
        log.mount(Static(f"you: {text}", classes="turn-user", markup=False))
        self._reply_text = ""
        self._reply_widget = Static(f"{self.target.label}: ", classes="turn-assistant", markup=False)
        log.mount(self._reply_widget)
        log.scroll_end(animate=False)
        self.generating = True
        self._status(f"{self.target.label} is answering ... (Esc stops)")

    def on_text_arrived(self, message: TextArrived) -> None:
        self._reply_text += message.text
        if self._reply_widget is not None:
            self._reply_widget.update(f"{self.target.label}: {self._reply_text}")
            self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)

    def on_reply_finished(self, message: ReplyFinished) -> None:
        self.generating = False
        self.last_reply = reply = message.reply
        ttft = f"first token {reply.ttft_ms:.0f} ms" if reply.ttft_ms is not None else "no tokens"
        speed = f" · {reply.tokens_per_s:.0f} tok/s" if reply.tokens_per_s else ""
        if reply.expert and self._reply_widget is not None:  # a route stage: which expert wrote this turn
            self._reply_widget.update(f"{self.target.label} → {reply.expert}: {self._reply_text}")
        expert = f" · answered by {reply.expert}" if reply.expert else ""
        self._status(f"{self.target.label}{expert} · {ttft}{speed} · {reply.tokens} tokens"
                     + (" · stopped" if reply.stopped else ""))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A thread worker that crashed outside its own error handling still shows up on screen."""
        if event.state == WorkerState.ERROR:
            self._status(f"[red]{type(event.worker.error).__name__}: {event.worker.error}[/]")

    # -- actions ------------------------------------------------------------------------------
    def action_stop_or_close(self) -> None:
        if self.generating and self._session is not None:
            self._session.stop()
        else:
            self.app.pop_screen()

    def action_new_conversation(self) -> None:
        if self._session is not None and not self.generating:
            self._session.reset()
            self.query_one("#chat-log", VerticalScroll).remove_children()
            self._status("new conversation")

    def _settings(self) -> GenerationSettings | None:
        try:
            return GenerationSettings(float(self._value("temperature")), float(self._value("top_p")),
                                      int(self._value("max_new_tokens")), self._value("system"))
        except ValueError:
            self._status("[red]settings: temperature and top-p are numbers, max new tokens an integer[/]")
            return None

    def _value(self, input_id: str) -> str:
        return self.query_one(f"#{input_id}", Input).value.strip()

    def _status(self, text: str) -> None:
        self.query_one("#chat-status", Static).update(text)


def target_for_stage(run: RunPaths, stage: str | None) -> Target:
    """A run's stage output, or the run's base when no stage is chosen or it has no output yet."""
    from core.errors import UserError
    from core.dag import BASE
    from core.targets import stage_target

    try:
        return stage_target(run, stage or BASE)
    except UserError:
        return stage_target(run, BASE)
