"""Small text helpers shared by the screens: numbers, sizes, stage states (durations: core.units)."""
from __future__ import annotations

from core.events import RunStatus, StageStatus

STATUS_LOOK = {  # stage or run status -> (glyph, words, style)
    StageStatus.WAITING: ("·", "waiting", "dim"),
    StageStatus.RUNNING: ("▶", "running", "bold $accent"),
    StageStatus.GATE_PENDING: ("⏸", "gate pending", "bold $warning"),
    StageStatus.PASSED: ("✓", "passed", "$success"),
    StageStatus.COMPLETED: ("✓", "completed", "$success"),
    StageStatus.FAILED: ("✗", "failed", "bold $error"),
    StageStatus.GATE_FAILED: ("✗", "gate failed", "bold $error"),
    StageStatus.REJECTED: ("⊘", "rejected", "bold $error"),
    StageStatus.STOPPED: ("■", "stopped", "$warning"),
    StageStatus.INTERRUPTED: ("!", "interrupted", "$warning"),
    StageStatus.SKIPPED: ("↷", "skipped", "$warning"),
    RunStatus.CREATED: ("·", "created", "dim"),
}
SEVERITY_STYLE = {"info": "", "good": "$success", "warn": "$warning", "error": "bold $error"}


METRIC_LABELS = {"learning_rate": "lr", "train/tokens_per_s": "tokens/s"}  # keys too long for the picker
SHORT_LABELS = {"learning_rate": "lr", "grad_norm": "grad", "rewards/margins": "margin", "train/tokens_per_s": "tok/s",
                "eval/accuracy": "acc", "eval/perplexity": "ppl"}  # the picker's words where the full row does not fit


def metric_label(name: str) -> str:
    return METRIC_LABELS.get(name, name)


def short_metric_label(name: str) -> str:
    """At most 8 characters: a known abbreviation, else the key's last part."""
    return SHORT_LABELS.get(name) or name.rsplit("/", 1)[-1][:8]


def status_look(status: str) -> tuple[str, str, str]:
    return STATUS_LOOK.get(status, ("?", status, ""))


def short_number(v: float | None) -> str:
    """A number in at most 8 characters: 1.234, 0.0312, 12.3k, -3.0e-05."""
    if v is None or v != v:
        return "-"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1e5 or a < 1e-3:
        return f"{v:.1e}"
    if a >= 1000:
        return f"{v / 1000:.1f}k"
    return f"{v:.4g}"


def size_unit(nbytes: float) -> tuple[float, str]:
    """The binary unit a size reads best in, and its scale: (1024 ** 3, "GiB") for 80 GB."""
    for power, unit in enumerate(("B", "KiB", "MiB", "GiB")):
        if abs(nbytes) < 1024 ** (power + 1):
            return 1024.0 ** power, unit
    return 1024.0 ** 4, "TiB"


def size(nbytes: float | None) -> str:
    if nbytes is None:
        return "-"
    scale, unit = size_unit(nbytes)
    return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes / scale:.1f} {unit}"


def size_pair(used: float, total: float) -> str:
    """'12.3/80 GiB': used and total in the total's unit."""
    scale, unit = size_unit(total)
    return f"{used / scale:.1f}/{total / scale:.0f} {unit}"


def elapsed_stamp(ts: float, origin: float) -> str:
    """Time since the run was created, as +h:mm:ss (the same wherever the screen is)."""
    s = int(max(ts - origin, 0))
    return f"+{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def bar(fraction: float, width: int) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    full = int(round(fraction * width))
    return "━" * full + "╌" * (width - full)
