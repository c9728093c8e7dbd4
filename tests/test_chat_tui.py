"""The chat and compare screens driven by Pilot against the real chat worker (shared, already warm)."""
from __future__ import annotations

from textual.app import App
from textual.widgets import Input, OptionList, SelectionList, Static

from core.chat_client import chat_history
from core.runs import find_run
from core.targets import resolve_target
from tiny_lineage import chat_worker, lineage_runs  # noqa: F401  (fixtures: worker, runs)
from tui.chat_screen import ChatScreen
from tui.compare_screen import CompareScreen


class Host(App):
    def __init__(self, screen):
        super().__init__()
        self._first = screen

    def on_mount(self) -> None:
        self.push_screen(self._first)


async def wait_for(pilot, condition, timeout_s: float = 60.0) -> None:
    """Let the app run until `condition()` holds (workers post their messages meanwhile)."""
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")


async def test_chat_screen_streams_switches_and_stops(runs, worker):
    screen = ChatScreen(resolve_target("latest:sft", runs), worker=worker)
    async with Host(screen).run_test(size=(120, 40)) as pilot:
        prompt = screen.query_one("#chat-input", Input)
        await wait_for(pilot, lambda: not prompt.disabled)
        screen.query_one("#temperature", Input).value = "0"
        prompt.value = "What is 2+3?"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.last_reply is not None)
        status = str(screen.query_one("#chat-status", Static).render())
        assert "first token" in status and "tok/s" in status
        assert screen._reply_text == screen.last_reply.text

        options = screen.query_one("#chat-targets", OptionList)
        assert [options.get_option_at_index(i).prompt for i in range(options.option_count)] == [
            "base", "sft@2", "sft@4", "sft", "dpo"]
        options.highlighted = 1
        options.action_select()
        await wait_for(pilot, lambda: screen.target.label == "sft@2" and not prompt.disabled)

        screen.query_one("#max_new_tokens", Input).value = "200"
        screen.query_one("#temperature", Input).value = "1.0"
        prompt.value = "Go on"
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen._reply_text != "")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not screen.generating)
        assert screen.last_reply.stopped
    turns = chat_history(find_run(runs, "latest"), screen._session.session)
    assert [t["target"] for t in turns] == ["sft", "sft", "sft@2", "sft@2"]


async def test_compare_screen_defaults_to_the_lineage(runs, worker):
    screen = CompareScreen(find_run(runs, "latest"), worker=worker, limit=8)
    async with Host(screen).run_test(size=(160, 50)) as pilot:
        await wait_for(pilot, lambda: screen.result is not None)
        assert [t.label for t in screen.result.targets] == ["base", "sft", "dpo"]
        selection = screen.query_one("#compare-targets", SelectionList)
        selection.deselect_all()
        selection.select(1)
        await pilot.press("r")
        assert "select 2-6" in str(screen.query_one("#compare-status", Static).render())
        selection.select(2)
        await pilot.press("r")
        await wait_for(pilot, lambda: not screen.running)
        assert [t.label for t in screen.result.targets] == ["sft@2", "sft@4"]
        assert screen.result.bases_loaded >= 1


class Borrowed:
    """The shared worker, handed to screens that would start (and close) their own."""

    def __init__(self, worker):
        self._worker = worker

    def start(self):
        return self

    def close(self) -> None:
        pass

    def __getattr__(self, name):
        return getattr(self._worker, name)


async def test_run_screen_opens_chat_and_compare(runs, worker, monkeypatch):
    from tui import chat_screen, compare_screen
    from tui.app import CockpitApp

    monkeypatch.setattr(chat_screen, "ChatWorker", lambda: Borrowed(worker))
    monkeypatch.setattr(compare_screen, "ChatWorker", lambda: Borrowed(worker))
    app = CockpitApp(runs, find_run(runs, "latest"), blink=False)
    async with app.run_test(size=(140, 45)) as pilot:
        await wait_for(pilot, lambda: getattr(app.screen, "snapshot", None) is not None)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen.target is not None)
        assert app.screen.target.run == str(find_run(runs, "latest").root)
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, ChatScreen))
        await pilot.press("m")
        # started: still running, or already done (a tiny lineage can compare between two polls)
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and (
            app.screen.running or app.screen.result is not None))
        await pilot.press("escape")
        await wait_for(pilot, lambda: not isinstance(app.screen, CompareScreen))
