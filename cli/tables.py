"""Plain-terminal renderings (rich) for `cockpit runs`, `show`, `check` and `rollouts`."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from core.dag import tree_rows
from core.events import STAGE_OK, SUMMARY_METRICS, StageStatus
from core.gates import rule_bounds
from core.kinds import KINDS
from core.status import delta_text, verdict

if TYPE_CHECKING:  # a listing or a report never builds the pydantic models
    from core.config import Curriculum, StageSpec

STATUS_STYLE = {StageStatus.COMPLETED: "green", StageStatus.PASSED: "green", StageStatus.RUNNING: "cyan",
                StageStatus.GATE_PENDING: "yellow", StageStatus.FAILED: "red", StageStatus.GATE_FAILED: "red",
                StageStatus.REJECTED: "red", StageStatus.STOPPED: "magenta", StageStatus.INTERRUPTED: "magenta",
                StageStatus.SKIPPED: "yellow",
                StageStatus.WAITING: "dim"}
SHOWN_METRICS = (*SUMMARY_METRICS, "eval/accuracy", "Δ acc", "eval/perplexity")
PIPED_WIDTH = 200
VERDICT_STYLE = {"better": "green", "worse": "red", "same": ""}


def terminal() -> Console:
    """A console for stdout: rich on a terminal; piped (CI, `| grep`), wide and without colour, so no cell is
    cut to 80 columns."""
    return Console() if sys.stdout.isatty() else Console(width=PIPED_WIDTH, color_system=None)


def age(ts: float | None, now: float | None = None) -> str:
    """'42s', '5m', '3h', '2d' since `ts`."""
    if not ts:
        return "-"
    secs = max(0, int((now or time.time()) - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def styled(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def runs_table(rows: list[dict], console: Console | None = None) -> None:
    table = Table(title="runs", title_justify="left")
    for col in ("id", "status", "stage", "accuracy", "age"):
        table.add_column(col)
    for r in rows:
        current = next((s for s in r["stages"] if s["status"] not in STAGE_OK | {StageStatus.WAITING}),
                       r["stages"][-1])
        acc = r.get("final_accuracy")
        table.add_row(r["id"], styled(r["status"]), current["name"], "-" if acc is None else f"{acc:.1%}",
                      age(r.get("created_at")))
    (console or terminal()).print(table)


def run_report(summary: dict, console: Console | None = None) -> None:
    console = console or terminal()
    console.print(f"[bold]{summary['id']}[/]  {styled(summary['status'])}  {summary['dir']}")
    table = Table()
    for col in ("stage", "kind", "from", "status", "steps", *SHOWN_METRICS, "gate"):
        table.add_column(col, justify="right" if col == "Δ acc" else "left")
    stages = summary["stages"]
    for row in tree_rows((s["name"], s["from"], KINDS[s["kind"]].outputs) for s in stages):
        s = stages[row.index]
        steps = f"{s['last_step'] or 0}/{s['total_steps']}" if s["total_steps"] else "-"
        table.add_row(f"[dim]{row.prefix}[/]{s['name']}", s["kind"], s["from"] or "-", styled(s["status"]), steps,
                      *[_metric_cell(s, m) for m in SHOWN_METRICS], _gate_text(s["gate"]))
    console.print(table)
    for s in summary["stages"]:
        if s["reason"]:
            console.print(f"[red]{s['name']}[/]: {s['reason']}")
        if "eval/accuracy" in s["delta_skipped"]:
            console.print(f"[dim]{s['name']} Δ acc n/c: {s['delta_skipped']['eval/accuracy']}[/]")


def _metric_cell(stage: dict, column: str) -> str:
    """A metric's final value, or for 'Δ acc' the accuracy's change against the parent stage."""
    return _delta_cell(stage, "eval/accuracy") if column == "Δ acc" else _num(stage["metrics"].get(column))


def _delta_cell(stage: dict, metric: str) -> str:
    """The stage's change in `metric` against its parent, coloured; dim n/c when the two are not comparable."""
    if metric in stage["delta"]:
        delta = stage["delta"][metric]
        style = VERDICT_STYLE[verdict(metric, delta)]
        return f"[{style}]{delta_text(metric, delta)}[/]" if style else delta_text(metric, delta)
    return "[dim]n/c[/]" if metric in stage["delta_skipped"] else "-"


def _num(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def _gate_text(gate: dict | None) -> str:
    if not gate:
        return "-"
    if gate.get("decision") is None:
        return "[yellow]pending[/]"
    return f"{gate['decision']} ({gate['by']})"


def plan_table(cur: Curriculum, console: Console | None = None) -> None:
    """`cockpit check`: the resolved stage plan, one row per stage (fits 80 columns)."""
    console = console or terminal()
    init = ", random init" if cur.model.init == "random" else ""
    at_once = f", {cur.parallel} at once" if cur.parallel > 1 else ""
    console.print(f"[bold]{cur.name}[/]  model {cur.model.base} ({cur.model.backend}{init}), {len(cur.stages)} stages"
                  f"{at_once}")
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("stage", no_wrap=True)
    table.add_column("kind and data", overflow="fold")
    table.add_column("train", no_wrap=True)
    table.add_column("eval and gate", min_width=20)
    for row in tree_rows((s.name, s.from_, KINDS[s.kind].outputs) for s in cur.stages):
        s = cur.stages[row.index]
        origin = f"\n[dim]{row.indent}← {s.from_}[/]" if s.from_ else ""
        table.add_row(f"[dim]{row.prefix}[/]{s.name}{origin}", s.kind + _kind_options(s),
                      _train_text(s), _gate_plan(s))
    console.print(table)


def _kind_options(stage: StageSpec) -> str:
    """The settings the stage's kind reads (loss, rewards, tools, on-policy mining) and its data, one per line."""
    read = KINDS[stage.kind].options
    parts = [f"loss {stage.loss}"] if "loss" in read else []
    if "rewards" in read and (stage.on_policy or KINDS[stage.kind].scores_data):
        parts.append("reward " + ",".join(r.rsplit("/", 1)[-1] for r in stage.rewards))
    if stage.tools:
        parts.append("tools " + ",".join(t.rsplit("/", 1)[-1] for t in stage.tools))
    if stage.on_policy:
        parts.append(f"on-policy {stage.on_policy.prompts}×{stage.on_policy.samples}")
    if stage.route:
        parts.append(f"{stage.route.router} over " + ",".join(stage.route.experts))
    data = stage.data if stage.data is None or isinstance(stage.data, str) else stage.data.source  # a DataSpec
    if data:
        parts.append(data.removeprefix("builtin:") if data.startswith("builtin:") else Path(data).name)
    return "".join(f"\n[dim]{p}[/]" for p in parts)


def _train_text(stage: StageSpec) -> str:
    if not KINDS[stage.kind].trains:
        return "-" + _launch_text(stage)
    t, lora = stage.train, stage.lora
    adapter = f"lora r{lora.r}" + (" dora" if lora.use_dora else "") if lora else "full"
    phases = f"\n[dim]ctx {'→'.join(str(p.max_length) for p in t.phases)}[/]" if t.phases else ""
    procs = f"\n[dim]{t.strategy} ×{t.nproc}[/]" if t.nproc > 1 or t.strategy != "ddp" else ""
    return (f"{t.steps}×{t.batch_size * t.grad_accum} lr {t.lr:g}\n[dim]{adapter}[/]" + phases + procs
            + _launch_text(stage))


def _launch_text(stage: StageSpec) -> str:
    """Where a job runs: '\nslurm gpu 1×8 GPU', '\nskypilot 1×H100:8 spot' (nothing for a local stage)."""
    if stage.launch.via == "skypilot":
        sky = stage.launch.skypilot
        return f"\n[dim]skypilot {sky.num_nodes}×{sky.accelerators or 'cpu'}{' spot' if sky.use_spot else ''}[/]"
    if stage.launch.via != "slurm":
        return ""
    s = stage.launch.slurm
    where = "local job" if s.cluster == "local" else f"slurm {s.partition or ''}".rstrip()
    return f"\n[dim]{where} {s.nodes}×{s.gpus_per_node} GPU[/]"


def _gate_plan(stage: StageSpec) -> str:
    ev = stage.evaluation()
    lines = [f"[dim]eval: {', '.join(ev.metrics)}[/]"] if ev else []
    if stage.gate is not None:
        lines += [f"{m} {b.text}" for m, rule in stage.gate.require.items() for b in rule_bounds(rule, m, {})]
        lines += ["[yellow]manual approval[/]"] if stage.gate.approval == "manual" else []
    return "\n".join(lines) or "-"


def rollouts_report(rollouts: list[dict], steps: list[int], console: Console | None = None) -> None:
    """`cockpit rollouts`: each stored completion as its turns (tool calls set apart), rewards coloured."""
    console = console or terminal()
    for r in rollouts:
        rewards = "  ".join(f"{name} {_reward_text(v)}" for name, v in r["rewards"].items())
        console.rule(f"[bold]step {r['step']}[/] · sample {r['sample']} · total {_reward_text(r['total'])}  {rewards}",
                     align="left", style="dim")
        console.print(f"[dim]prompt[/] {escape(r['prompt'])}")
        for turn in r["turns"]:
            _print_turn(console, turn)
    console.print(f"[dim]stored steps: {', '.join(map(str, steps))}  (--step N, --all, --json)[/]")


def _print_turn(console: Console, turn: dict) -> None:
    if turn["role"] == "tool":
        console.print(f"  [magenta]tool[/] {escape(turn['content'])}")
        return
    if turn.get("content"):
        console.print(f"  [cyan]assistant[/] {escape(turn['content'])}")
    for call in turn.get("tool_calls", []):
        console.print(f"  [yellow]→ {escape(str(call['name']))}[/]({escape(json.dumps(call['arguments']))})")


def _reward_text(value: float | None) -> str:
    if value is None:
        return "[dim]-[/]"
    style = "green" if value > 0 else "red" if value < 0 else "dim"
    return f"[{style}]{value:.3g}[/]"
