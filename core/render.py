"""Plain-terminal renderings (rich) of runs for `cockpit runs` and `cockpit show`."""
from __future__ import annotations

import time

from rich.console import Console
from rich.table import Table

STATUS_STYLE = {"completed": "green", "passed": "green", "running": "cyan", "gate_pending": "yellow",
                "failed": "red", "gate_failed": "red", "rejected": "red", "stopped": "magenta",
                "interrupted": "magenta", "waiting": "dim"}
SHOWN_METRICS = ("loss", "reward", "eval/accuracy", "eval/perplexity")


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
        current = next((s for s in r["stages"] if s["status"] not in ("completed", "passed", "waiting")),
                       r["stages"][-1])
        acc = r.get("final_accuracy")
        table.add_row(r["id"], styled(r["status"]), current["name"], "-" if acc is None else f"{acc:.1%}",
                      age(r.get("created_at")))
    (console or Console()).print(table)


def run_report(summary: dict, console: Console | None = None) -> None:
    console = console or Console()
    console.print(f"[bold]{summary['id']}[/]  {styled(summary['status'])}  {summary['dir']}")
    table = Table()
    for col in ("stage", "kind", "from", "status", "steps", *SHOWN_METRICS, "gate"):
        table.add_column(col)
    for s in summary["stages"]:
        metrics = s["metrics"]
        steps = f"{s['last_step'] or 0}/{s['total_steps']}" if s["total_steps"] else "-"
        table.add_row(s["name"], s["kind"], s["from"] or "-", styled(s["status"]), steps,
                      *[_num(metrics.get(m)) for m in SHOWN_METRICS], _gate_text(s["gate"]))
    console.print(table)
    for s in summary["stages"]:
        if s["reason"]:
            console.print(f"[red]{s['name']}[/]: {s['reason']}")


def _num(value) -> str:
    return "-" if value is None else f"{value:.4g}"


def _gate_text(gate: dict | None) -> str:
    if not gate:
        return "-"
    if gate.get("decision") is None:
        return "[yellow]pending[/]"
    return f"{gate['decision']} ({gate['by']})"
