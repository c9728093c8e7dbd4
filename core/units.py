"""Durations and counts as people read them, for every front-end (no textual here)."""
from __future__ import annotations


def duration(seconds: float | None) -> str:
    """12s, 4m05s, 2h03m, 3d04h."""
    if seconds is None:
        return "-"
    s = int(max(seconds, 0))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def count(n: int) -> str:
    """12, 12.3k, 1.2M, 3.4B."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= size:
            return f"{n / size:.1f}{suffix}"
    return str(n)
