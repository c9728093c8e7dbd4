"""Which checkpoints can be trusted: only complete ones, never the highest-numbered by default."""
from __future__ import annotations

import re
from pathlib import Path

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
# A Trainer checkpoint writes trainer_state.json last; our workers rename it into place after that.
COMPLETE_MARKER = "trainer_state.json"


def complete_checkpoints(folder: Path) -> list[Path]:
    """Complete `checkpoint-<step>` folders in `folder`, lowest step first."""
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = CHECKPOINT.match(child.name)
        if match and child.is_dir() and (child / COMPLETE_MARKER).is_file():
            found.append((int(match.group(1)), child))
    return [path for _, path in sorted(found)]


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None."""
    found = complete_checkpoints(folder)
    return found[-1] if found else None
