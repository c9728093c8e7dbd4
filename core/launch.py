"""Starting a run: validate the config first, so a bad file never leaves a half-created run."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from core.config_load import load_curriculum
from core.runs import RunPaths, create_run

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


def new_run(config: Path | None, runs_dir: Path, overrides: Sequence[str] = ()) -> RunPaths:
    """Validate `config` (default: the embedded demo) with its `--set` overrides and create its run directory."""
    config = Path(config) if config else DEFAULT_CONFIG
    curriculum = load_curriculum(config, overrides, launches=True)
    return create_run(curriculum, config, runs_dir, overrides)
