"""Rich renderings of a comparison: the metrics per target and the outputs side by side, differences marked.

Used by `cockpit compare` and by the TUI compare screen (Textual shows rich renderables as they are).
"""
from __future__ import annotations

from difflib import SequenceMatcher

from rich.table import Table
from rich.text import Text

from core.chat_client import CompareResult

DIFF_STYLE = "bold black on yellow"
NEWLINE = "↵"


def printable(text: str) -> str:
    """Model output fit for one table cell: newlines as ↵, other control characters escaped."""
    return "".join(NEWLINE if c == "\n" else (c if c.isprintable() else c.encode("unicode_escape").decode())
                   for c in text)


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def metrics_table(result: CompareResult) -> Table:
    """One row per target: accuracy (and the one the stage's eval recorded), perplexity, reward, output length;
    short headers, so that 80 columns hold it beside the target list."""
    answered = result.results[0]["answered"] if result.results else 0
    table = Table(title=f"metrics on {result.source} ({answered} prompts with an answer; recorded: the accuracy "
                  "the stage's own eval recorded)", title_justify="left", expand=False)
    for name in ("target", "accuracy", "recorded", "ppl", "reward", "chars"):
        table.add_column(name, justify="left" if name == "target" else "right")
    best = _best_accuracy(result)
    for target, res, recorded in zip(result.targets, result.results, result.recorded):
        accuracy = Text(_fmt(res["accuracy"]), style="bold green" if best is not None and res["accuracy"] == best
                        else "")
        table.add_row(target.label, accuracy, _fmt(recorded), _fmt(res["perplexity"]), _fmt(res["reward"]),
                      _fmt(res["mean_length"], 1))
    return table


def _best_accuracy(result: CompareResult) -> float | None:
    values = [r["accuracy"] for r in result.results if r["accuracy"] is not None]
    return max(values) if len(values) > 1 and len(set(values)) > 1 else None


def outputs_table(result: CompareResult, limit: int | None = None, only_notable: bool = False) -> Table:
    """One row per prompt, one column per target; prompts where the targets differ or one is wrong come first
    (or alone), each output marked right or wrong against the answer, text differing from the first target
    highlighted."""
    order = shown_prompts(result, only_notable)
    notable = len(order) if only_notable else sum(result.notable(i) for i in order)
    table = Table(show_lines=True, expand=True, title=_outputs_title(result, notable, only_notable),
                  title_justify="left")
    table.add_column("prompt", ratio=1)
    for target in result.targets:
        table.add_column(target.label, ratio=1)
    for i in order[:limit]:
        row = result.rows[i]
        outputs = [printable(res["outputs"][i]) for res in result.results]
        prompt = Text(str(row["prompt"]))
        if row.get("answer") not in (None, ""):
            prompt.append(f"\nanswer: {row['answer']}", style="dim")
        cells = [highlighted(out, outputs[0]) if n else Text(out) for n, out in enumerate(outputs)]
        table.add_row(prompt, *[_marked(_routed(cell, res.get("routes"), i), res["right"][i])
                                for cell, res in zip(cells, result.results)])
    return table


def shown_prompts(result: CompareResult, only_notable: bool) -> list[int]:
    """Prompt indices, the notable ones (outputs differ or one is wrong) first; only those if asked."""
    notable = [i for i in range(len(result.rows)) if result.notable(i)]
    if only_notable:
        return notable
    first = set(notable)
    return notable + [i for i in range(len(result.rows)) if i not in first]


def _outputs_title(result: CompareResult, notable: int, only_notable: bool) -> str:
    return (f"outputs: {notable} of {len(result.rows)} prompts differ or have a wrong answer, "
            f"{'only those' if only_notable else 'those first'} (✓ right, ✗ wrong; highlighted: differs from "
            f"{result.targets[0].label})")


def _routed(cell: Text, routes: list[str] | None, i: int) -> Text:
    """A route stage's output after the name of the expert that wrote it."""
    return Text.assemble((f"{routes[i]} › ", "italic cyan"), cell) if routes else cell


def _marked(cell: Text, right: bool | None) -> Text:
    """The output behind a ✓ or ✗ when the prompt has an answer."""
    if right is None:
        return cell
    return Text.assemble(("✓ ", "green") if right else ("✗ ", "bold red"), cell)


def highlighted(text: str, reference: str) -> Text:
    """`text` with the spans that differ from `reference` styled."""
    out = Text()
    for op, _, _, j1, j2 in SequenceMatcher(None, reference, text, autojunk=False).get_opcodes():
        if j2 > j1:
            out.append(text[j1:j2], style=None if op == "equal" else DIFF_STYLE)
    return out
