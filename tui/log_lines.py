"""Worker log lines as the log pane shows them (no textual here, so it is testable on its own).

TRL/transformers metric dicts (`{'loss': '1.582', 'grad_norm': '3.1', ...}`) become `key value` cells of one
width per key, so consecutive lines line up; library warnings shrink to one dim line (the full text when the
operator filters for it); a progress bar keeps only its latest state; the worker's own `[info]` tag is dropped.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Iterable

from tui.format import short_number

METRICS, LIBRARY, WARNING, ERROR, PROGRESS, TEXT = "metrics", "library", "warning", "error", "progress", "text"
VALUE_WIDTH = 8  # short_number's widest answer: every value cell is this wide, so columns line up

SHORT_KEYS = {
    "learning_rate": "lr", "grad_norm": "grad", "mean_token_accuracy": "tok_acc", "num_tokens": "tokens",
    "train_runtime": "runtime", "train_loss": "train_loss", "frac_reward_zero_std": "zero_std",
    "completions/mean_length": "len",
}
KEY_PARTS = (("rewards/", "r/"), ("completions/", "c/"), ("_per_second", "/s"), ("train_", ""))

PY_WARNING = re.compile(r"^(?P<path>\S+?\.py):(?P<line>\d+): (?P<category>\w*Warning): (?P<message>.*)$")
PLAIN_WARNING = re.compile(r"^(WARNING|Warning)\b[:\s]")
ERROR_LINE = re.compile(r"^(\[error\] |Traceback \(most recent call last\)|\w+(Error|Exception): )")
PROGRESS_BAR = re.compile(r"^(?P<label>[^|]*?)\s*\d{1,3}%\|")


@dataclass(frozen=True)
class ShownLine:
    """One worker log line ready to draw: what it is (METRICS, LIBRARY, ...), its text (rows split by \\n) and
    where the metric names sit in it, as (start, end) offsets."""

    kind: str
    text: str
    keys: tuple[tuple[int, int], ...] = ()


def shown(raw: str, width: int, full: bool = False) -> ShownLine:
    """`raw` as the pane draws it at `width` columns; `full` keeps a library warning whole."""
    cells = metric_cells(raw)
    if cells:
        return ShownLine(METRICS, *lay_out(cells, width))
    warning = PY_WARNING.match(raw)
    if warning or PLAIN_WARNING.match(raw):
        text = condensed_warning(warning) if warning else raw
        return ShownLine(LIBRARY, text if full else ellipsized(text, width))
    return ShownLine(*_tagged(raw))


def _tagged(raw: str) -> tuple[str, str]:
    """Kind and text of a line that is neither metrics nor a library warning."""
    if raw.startswith("[info] "):
        return TEXT, raw[len("[info] "):]
    if raw.startswith("[warning] "):
        return WARNING, raw[len("[warning] "):]
    if ERROR_LINE.match(raw):
        return ERROR, raw
    return (PROGRESS if PROGRESS_BAR.match(raw) else TEXT), raw


def metric_cells(raw: str) -> list[tuple[str, str]] | None:
    """(short name, value) of each entry of a logged metrics dict, or None when the line is not one."""
    text = raw.strip()
    if not (text.startswith("{'") and text.endswith("}")):
        return None
    try:
        logged = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(logged, dict):
        return None
    values = {str(k): _number(v) for k, v in logged.items()}
    if all(v is None for v in values.values()):
        return None
    return [(short_key(k), _value_text(v, logged[k])) for k, v in values.items()]


def _number(value) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _value_text(number: float | None, value) -> str:
    if number is None:
        return str(value)
    return str(int(number)) if number.is_integer() and abs(number) < 1000 else short_number(number)


def short_key(key: str) -> str:
    """A metric name short enough for the pane: learning_rate -> lr, rewards/margins -> r/margins."""
    if key in SHORT_KEYS:
        return SHORT_KEYS[key]
    for long, short in KEY_PARTS:
        key = key.replace(long, short)
    return key.removesuffix("/mean")


def lay_out(cells: list[tuple[str, str]], width: int) -> tuple[str, tuple[tuple[int, int], ...]]:
    """`key value` cells packed into rows of at most `width` columns, and where each key sits.

    A value takes VALUE_WIDTH columns whatever its length, so lines with the same keys break and align alike."""
    text, keys, row_start = "", [], 0
    for key, value in cells:
        cell = f"{key} {value:<{VALUE_WIDTH}}"
        used = len(text) - row_start
        if used and used + 1 + len(cell) > width:
            text = text.rstrip() + "\n"
            row_start = len(text)
        elif used:
            text += " "
        keys.append((len(text), len(text) + len(key)))
        text += cell
    return text.rstrip(), tuple(keys)


def condensed_warning(match: re.Match) -> str:
    """`Category: message (package/module.py:line)`: the message first, where it survives ellipsizing."""
    path = match["path"].split("site-packages/")[-1]
    return f"{match['category']}: {match['message']} ({path}:{match['line']})"


def ellipsized(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(width - 1, 0)] + "…"


def folded(lines: Iterable[str]) -> list[str]:
    """Drop the source line Python echoes under a warning and all but the latest of a progress bar's updates."""
    out: list[str] = []
    for line in lines:
        if out and line[:1].isspace() and PY_WARNING.match(out[-1]):
            continue
        bar = PROGRESS_BAR.match(line)
        if out and bar and _same_bar(out[-1], bar["label"]):
            out[-1] = line
            continue
        out.append(line)
    return out


def _same_bar(previous: str, label: str) -> bool:
    bar = PROGRESS_BAR.match(previous)
    return bar is not None and bar["label"] == label


def log_title(stage: str | None, pinned: bool) -> str:
    """The log pane's title: the stage shown and whether it follows the running stage or stays pinned."""
    return f"Log · {stage or '—'} · {'pinned' if pinned else 'following'}"
