"""The rollouts pane: what an RL stage's policy generated at each stored step, its tool calls and rewards.

A thread reads the stage's `rollout` events from the run store (only rows newer than the last one it
saw) and posts them; the screen folds them into a RolloutBook and shows one step at a time, newest
first. Read-only: opening or closing it never touches the run.
"""
from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from rich.console import Group, RenderableType
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState, get_current_worker

from core.events import RUN_LIVE, STAGE_ACTIVE, EventKind, StageStatus
from core.kinds import readers_of
from core.runs import RunPaths
from core.store import Event, RunStore
from tui.format import status_look

LIVE_POLL_S = 0.5       # rollouts arrive every few steps at most; twice a second is plenty
FINISHED_POLL_S = 2.0   # a finished run only changes when it is resumed
CHUNK = 5_000           # rollout events read per query
RL_KINDS = tuple(readers_of("rollouts"))  # the kinds that store rollouts (grpo)
LABEL_WIDTH = 9         # "assistant"


# -- data: rollout events folded into view objects ------------------------------------------------
@dataclass(frozen=True)
class Rollout:
    """One stored completion: the prompt, its turns and each reward's value."""

    step: int
    sample: int
    prompt: str
    turns: tuple[dict, ...]
    rewards: tuple[tuple[str, float | None], ...]
    total: float | None


def rollout_of(ev: Event) -> Rollout:
    d = ev.data
    rewards = d.get("rewards") or {}
    return Rollout(int(ev.step or 0), int(d.get("sample") or 0), str(d.get("prompt") or ""),
                   tuple(t for t in d.get("turns") or () if isinstance(t, dict)),
                   tuple((str(k), _number(v)) for k, v in rewards.items()), _number(d.get("total")))


class RolloutBook:
    """A stage's rollouts by step; a sample stored again for the same step (a resumed stage) replaces the old one."""

    def __init__(self) -> None:
        self._steps: dict[int, dict[int, Rollout]] = {}

    def add(self, rollouts: list[Rollout]) -> set[int]:
        """Fold `rollouts` in; the steps that changed."""
        for r in rollouts:
            self._steps.setdefault(r.step, {})[r.sample] = r
        return {r.step for r in rollouts}

    @property
    def steps(self) -> list[int]:
        """Stored steps, newest first."""
        return sorted(self._steps, reverse=True)

    def samples(self, step: int) -> list[Rollout]:
        return [s for _, s in sorted(self._steps.get(step, {}).items())]

    def mean_total(self, step: int) -> float | None:
        totals = [r.total for r in self._steps.get(step, {}).values() if r.total is not None]
        return sum(totals) / len(totals) if totals else None

    def __len__(self) -> int:
        return len(self._steps)


@dataclass(frozen=True)
class StageFacts:
    """What the pane needs to know about the stage besides its rollouts."""

    name: str | None
    kind: str | None = None
    status: str | None = None
    every: int | None = None          # rollouts stored at step 1 and every N steps
    samples: int = 0                  # completions stored each time
    rl_stages: tuple[tuple[str, int | None, int], ...] = ()  # (name, every, samples) of each RL stage
    run_live: bool = False

    @property
    def label(self) -> str:
        """The stage's name, with its kind when the name does not say it (markup)."""
        name = f"[b]{escape(str(self.name))}[/]"
        return name if self.kind in (None, self.name) else f"{name} ({escape(str(self.kind))})"


def stage_facts(meta: dict, rows: list[dict], stage: str | None) -> StageFacts:
    """The stage's kind and status (stages table) and its rollout settings (the run's config)."""
    specs = {s.get("name"): s for s in (meta.get("config") or {}).get("stages") or () if isinstance(s, dict)}
    rl = tuple((r["name"], *_keeps(specs.get(r["name"]) or {})) for r in rows if r["kind"] in RL_KINDS)
    live = meta.get("status") in RUN_LIVE
    row = next((r for r in rows if r["name"] == stage), None)
    if row is None:
        return StageFacts(None, rl_stages=rl, run_live=live)
    every, samples = _keeps(specs.get(stage) or {}) if row["kind"] in RL_KINDS else (None, 0)
    return StageFacts(stage, row["kind"], row.get("status") or StageStatus.WAITING, every, samples, rl, live)


def _keeps(spec: dict) -> tuple[int | None, int]:
    """A stage's `rollouts:` as (every N steps, samples each time); every defaults to its logging_steps."""
    keep = spec.get("rollouts") or {}
    every = keep.get("every") or (spec.get("train") or {}).get("logging_steps")
    return (int(every) if every else None), int(keep.get("samples", 4) or 0)


def pick_stage(stages, name: str | None) -> str | None:
    """The stage under the cursor (`name`); on a stage that stores no rollouts, the running RL stage if there is
    one."""
    if not stages:
        return None
    chosen = next((s for s in stages if s.name == name), stages[-1])
    if chosen.kind in RL_KINDS:
        return chosen.name
    running = [s.name for s in stages if s.kind in RL_KINDS and s.status in STAGE_ACTIVE]
    return running[0] if running else chosen.name


def _when(every: int | None, samples: int) -> str:
    return f"{samples} samples at step 1 and every {every or '?'} steps"


def empty_text(facts: StageFacts) -> str:
    """What the pane says while the stage has no rollouts to show (markup)."""
    if facts.name is None:
        return "This run has no such stage." if facts.rl_stages else "This run has no stages that store rollouts."
    if facts.kind not in RL_KINDS:
        lines = [f"{facts.label} stores no rollouts; grpo stages do, at step 1 and every [i]rollouts.every[/] "
                 "steps (default: its logging_steps)."]
        lines += [f"This run's [b]{escape(name)}[/] stores {_when(every, samples)}: select it on the run screen "
                  "(↑ ↓) and press [b]o[/]." for name, every, samples in facts.rl_stages if samples]
        return "\n\n".join(lines)
    if facts.samples == 0:
        return f"{facts.label} stores no rollouts ([i]rollouts: {{samples: 0}}[/])."
    when = _when(facts.every, facts.samples)
    if facts.status == StageStatus.WAITING:
        return f"{facts.label} has not started yet; it stores {when}.\n\n[dim]They show here as they arrive.[/]"
    if facts.status in STAGE_ACTIVE and facts.run_live:
        return f"No rollouts yet: {facts.label} stores {when}.\n\n[dim]They show here as they arrive.[/]"
    return f"{facts.label} stored no rollouts (it is {escape(status_look(facts.status or '')[1])})."


# -- rendering -------------------------------------------------------------------------------------
def reward_text(value: float | None, bold: bool = False) -> Text:
    """A reward coloured like `cockpit rollouts`: green above zero, red below, dim at zero or unknown."""
    if value is None:
        return Text("-", "dim")
    style = "green" if value > 0 else "red" if value < 0 else "dim"
    return Text(f"{value:.3g}", f"bold {style}" if bold else style)


def sample_header(r: Rollout) -> Text:
    head = Text()
    head.append(f"step {r.step}", "bold")
    head.append(f" · sample {r.sample} · ", "dim")
    head.append("total ")
    head.append_text(reward_text(r.total, bold=True))
    for name, value in r.rewards:
        head.append("   ")
        head.append(f"{name} ", "dim")
        head.append_text(reward_text(value))
    return head


def call_text(call: Any) -> str:
    """A tool call as `→ name(arguments)`, arguments as the JSON the policy wrote."""
    if not isinstance(call, dict):
        return f"→ {call}"
    args = call.get("arguments")
    shown = args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)
    return f"→ {call.get('name', '?')}({shown})"


def sample_block(r: Rollout) -> RenderableType:
    """One sample: its header, the prompt, then every turn; long text wraps under its label."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=LABEL_WIDTH, no_wrap=True)
    grid.add_column(ratio=1, overflow="fold")
    grid.add_row(Text("prompt", "dim"), Text(r.prompt.strip()))
    for turn in r.turns:
        content = str(turn.get("content") or "").strip()
        if turn.get("role") == "tool":
            grid.add_row(Text("tool", "magenta"), Padding(Text(content or "(empty)", "magenta"), (0, 0, 0, 2)))
            continue
        label = Text(str(turn.get("role") or "assistant"), "cyan")
        calls = [c for c in turn.get("tool_calls") or ()]
        if content or not calls:
            grid.add_row(label, Text(content) if content else Text("(empty)", "dim"))
            label = Text("")
        for call in calls:
            grid.add_row(label, Text(call_text(call), "yellow"))
            label = Text("")
    return Group(sample_header(r), Padding(grid, (0, 0, 0, 2)))


def step_renderable(rollouts: list[Rollout]) -> RenderableType:
    """A step's samples, one block each, a blank line between them."""
    parts: list[RenderableType] = []
    for i, r in enumerate(rollouts):
        if i:
            parts.append(Text(""))
        parts.append(sample_block(r))
    return Group(*parts)


def step_option(step: int, mean: float | None) -> Text:
    """A line of the step list: the step and its samples' mean total reward."""
    text = Text(f"{step:>6} ")
    text.append("     -" if mean is None else f"{mean:>6.2f}", reward_text(mean).style)
    return text


# -- the screen ------------------------------------------------------------------------------------
class RolloutsRead(Message):
    """The reader found new rollouts (possibly none) and the stage's current facts."""

    def __init__(self, rollouts: list[Rollout], facts: StageFacts):
        super().__init__()
        self.rollouts, self.facts = rollouts, facts


class RolloutsScreen(Screen):
    """One RL stage's stored rollouts, a step at a time (newest first), refreshed while the stage trains."""

    BINDINGS = [
        Binding("escape", "close", "Back"),
        Binding("left_square_bracket", "step(1)", "Older step", key_display="[", priority=True),
        Binding("right_square_bracket", "step(-1)", "Newer step", key_display="]", priority=True),
        Binding("left", "step(1)", show=False, priority=True),
        Binding("right", "step(-1)", show=False, priority=True),
        Binding("home", "newest", show=False, priority=True),
        Binding("j", "scroll(1)", show=False),
        Binding("k", "scroll(-1)", show=False),
    ]

    def __init__(self, paths: RunPaths, stage: str | None, **kwargs):
        super().__init__(**kwargs)
        self.paths, self.stage = paths, stage
        self.book = RolloutBook()
        self.facts = StageFacts(stage)
        self.step: int | None = None   # the step shown
        self.follow = True             # jump to each new step as it arrives (until the operator moves away)
        self.reads = 0                 # messages from the reader applied (tests wait on it)
        self._wake = threading.Event()

    def compose(self) -> ComposeResult:
        yield Static(self._header_text(), id="rollouts-header")
        with Horizontal(id="rollouts-main"):
            yield OptionList(id="rollouts-steps")
            with VerticalScroll(id="rollouts-body"):
                yield Static("[dim]reading the run store…[/]", id="rollouts-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#rollouts-steps").border_title = "step   mean"
        self.query_one("#rollouts-body").border_title = "Rollouts"
        self.query_one("#rollouts-body").focus()
        self._read()

    def on_resize(self) -> None:
        self.set_class(self.size.width < 100, "-compact")
        if self.has_class("-compact") and self.query_one("#rollouts-steps").has_focus:
            self.query_one("#rollouts-body").focus()  # the step list is hidden: keys scroll the text

    def on_unmount(self) -> None:
        self.workers.cancel_group(self, "rollouts-poll")
        self._wake.set()

    # -- reading ------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="rollouts-poll", exit_on_error=False, description="reading rollouts")
    def _read(self) -> None:
        worker = get_current_worker()
        last_id, last_facts = 0, None
        with RunStore(self.paths.db) as store:
            while not worker.is_cancelled:
                facts = stage_facts(store.meta(), store.stages(), self.stage)
                events = store.events(after_id=last_id, kinds=[EventKind.ROLLOUT], stage=self.stage, limit=CHUNK) \
                    if facts.name is not None else []
                if events:
                    last_id = events[-1].id
                if events or facts != last_facts:
                    last_facts = facts
                    self.post_message(RolloutsRead([rollout_of(ev) for ev in events], facts))
                if len(events) >= CHUNK:
                    continue
                self._wake.wait(LIVE_POLL_S if facts.run_live else FINISHED_POLL_S)
                self._wake.clear()

    @on(RolloutsRead)
    def _apply(self, message: RolloutsRead) -> None:
        self.facts = message.facts
        changed = self.book.add(message.rollouts)
        steps = self.book.steps
        before = self.step
        if steps and (self.step is None or (self.follow and self.step != steps[0])):
            self.step = steps[0]
        if changed:
            self._list_steps()
        if self.step != before or self.step in changed or not steps:
            self._show_step(scroll_home=self.step != before)
        self._retitle()
        self.reads += 1

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            self.query_one("#rollouts-text", Static).update(
                f"[red]reading rollouts failed: {escape(str(event.worker.error))}[/]")

    # -- drawing ------------------------------------------------------------------------------
    def _list_steps(self) -> None:
        steps = self.query_one("#rollouts-steps", OptionList)
        with self.app.batch_update():
            steps.clear_options()
            steps.add_options([Option(step_option(s, self.book.mean_total(s)), id=str(s)) for s in self.book.steps])
            self._highlight()

    def _highlight(self) -> None:
        if self.step is not None:
            steps = self.query_one("#rollouts-steps", OptionList)
            index = self.book.steps.index(self.step)
            if steps.highlighted != index:
                steps.highlighted = index

    def _show_step(self, scroll_home: bool) -> None:
        text = self.query_one("#rollouts-text", Static)
        if self.step is None:
            text.update(empty_text(self.facts))
        else:
            text.update(step_renderable(self.book.samples(self.step)))
        if scroll_home:
            self.query_one("#rollouts-body", VerticalScroll).scroll_home(animate=False)

    def _retitle(self) -> None:
        self.query_one("#rollouts-header", Static).update(self._header_text())
        body = self.query_one("#rollouts-body")
        steps = self.book.steps
        if self.step is None:
            title, subtitle = "Rollouts", ""
        else:
            place = steps.index(self.step)
            mean = self.book.mean_total(self.step)
            newest = " (newest)" if place == 0 else ""
            mean_text = f" · mean total {mean:.3g}" if mean is not None else ""
            title = f"step {self.step}{newest} · {len(self.book.samples(self.step))} samples{mean_text}"
            subtitle = f"{place + 1} of {len(steps)} stored steps, newest first · \\[ older  ] newer"
        if body.border_title != title:
            body.border_title = title
        if body.border_subtitle != subtitle:
            body.border_subtitle = subtitle

    def _header_text(self) -> str:
        facts = self.facts
        parts = ["[b]Rollouts[/]", escape(self.paths.id)]
        if facts.name is not None:
            glyph, words, style = status_look(facts.status or "")
            state = f"[{style}]{glyph} {words}[/]" if style else f"{glyph} {words}"
            parts.append(f"stage {facts.label} {state}")
        elif self.stage is not None:
            parts.append(f"stage [b]{escape(self.stage)}[/]")
        return "  ".join(parts)

    # -- actions ------------------------------------------------------------------------------
    def action_step(self, delta: int) -> None:
        """Move `delta` places in the newest-first list: +1 is an older step, -1 a newer one."""
        steps = self.book.steps
        if self.step is None or not steps:
            return
        place = min(max(steps.index(self.step) + delta, 0), len(steps) - 1)
        self._go(steps[place])

    def action_newest(self) -> None:
        """The newest step, from its top."""
        if self.book.steps:
            self._go(self.book.steps[0])
        self.query_one("#rollouts-body", VerticalScroll).scroll_home(animate=False)

    def _go(self, step: int) -> None:
        self.follow = step == self.book.steps[0]
        if step == self.step:
            return
        self.step = step
        self._highlight()
        self._show_step(scroll_home=True)
        self._retitle()

    @on(OptionList.OptionHighlighted, "#rollouts-steps")
    def _step_picked(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_index != event.option_list.highlighted:
            return  # stale: the highlight moved on since (keys pressed quickly, the list rebuilt)
        if event.option.id is not None and int(event.option.id) != self.step:
            self._go(int(event.option.id))

    def action_scroll(self, lines: int) -> None:
        body = self.query_one("#rollouts-body", VerticalScroll)
        body.scroll_relative(y=lines, animate=False)

    def action_close(self) -> None:
        self.app.pop_screen()


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
