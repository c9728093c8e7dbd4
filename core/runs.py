"""Run directories: where runs live, how they are named, created and found again."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from core.errors import UserError
from core.kinds import KINDS
from core.store import RunStore

if TYPE_CHECKING:  # pydantic models: a command that only lists or shows runs never builds them
    from core.config import Curriculum

DB_NAME = "run.db"
FAILURE_FILE = "failure.json"  # a failed worker's exception: {"type", "message", "step"}


def runs_dir(cli_value: str | None = None) -> Path:
    """--runs-dir, else $COCKPIT_RUNS_DIR, else ./runs."""
    return Path(cli_value or os.environ.get("COCKPIT_RUNS_DIR") or "runs")


@dataclass(frozen=True)
class RunPaths:
    """The fixed layout of one run directory."""

    root: Path

    @property
    def id(self) -> str:
        return self.root.name

    @property
    def db(self) -> Path:
        return self.root / DB_NAME

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def base(self) -> Path:
        """Where a builtin base model is materialised for this run."""
        return self.root / "base"

    @property
    def supervisor_log(self) -> Path:
        return self.root / "supervisor.log"

    def stage_dir(self, stage: str) -> Path:
        return self.root / "stages" / stage

    def stage_final(self, stage: str) -> Path:
        """A stage's finished output (model folder or adapter folder), renamed into place when complete."""
        return self.stage_dir(stage) / "final"

    def stage_checkpoints(self, stage: str) -> Path:
        """Complete intermediate checkpoints only (`checkpoint-<step>`, each renamed into place)."""
        return self.stage_dir(stage) / "checkpoints"

    def stage_log(self, stage: str) -> Path:
        return self.stage_dir(stage) / "worker.log"

    def stage_spec(self, stage: str) -> Path:
        return self.stage_dir(stage) / "spec.json"

    def stage_failure(self, stage: str) -> Path:
        """What a failed worker recorded about its exception (FAILURE_FILE in its output folder)."""
        return self.stage_dir(stage) / FAILURE_FILE


def create_run(cur: Curriculum, source_file: Path, directory: Path, overrides: Sequence[str] = ()) -> RunPaths:
    """Make `<runs-dir>/<id>/` with run.db (meta keeps the `--set` overrides) and the resolved config;
    nothing is left on failure."""
    _check_writable(directory)
    paths = _fresh_run_dir(directory, cur.name)
    tmp = paths.root.with_name(f".{paths.id}.creating")
    tmp.mkdir(parents=True)
    try:
        from core.config import dump_resolved

        (tmp / "config.yaml").write_text(dump_resolved(cur))
        stages = [{"name": s.name, "kind": s.kind, "from": s.from_,
                   "total_steps": s.train.steps if KINDS[s.kind].trains else None}
                  for s in cur.stages]
        meta = {"id": paths.id, "name": cur.name, "source": str(source_file.resolve()),
                "created_at": time.time(), "status": "created", "overrides": list(overrides),
                "config": cur.model_dump(mode="json", by_alias=True)}
        RunStore.create(tmp / DB_NAME, meta, stages).close()
        tmp.rename(paths.root)
    except BaseException:
        _remove_tree(tmp)
        raise
    return paths


def _check_writable(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"runs directory {directory} cannot be created: {exc.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UserError(f"runs directory {directory} is not writable")


def _fresh_run_dir(directory: Path, name: str) -> RunPaths:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        candidate = directory / (f"{stamp}-{name}" + (f"-{n}" if n else ""))
        if not candidate.exists():
            return RunPaths(candidate)
    raise UserError(f"cannot pick a fresh run id in {directory}")


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def list_runs(directory: Path) -> list[RunPaths]:
    """Every run under the runs directory, oldest first."""
    if not directory.is_dir():
        return []
    found = [RunPaths(p) for p in directory.iterdir() if (p / DB_NAME).is_file() and not p.name.startswith(".")]
    return sorted(found, key=lambda r: r.id)


def find_run(directory: Path, ref: str) -> RunPaths:
    """A run by id, unique id prefix, or `latest`; a clear error otherwise."""
    runs = list_runs(directory)
    if ref == "latest":
        if not runs:
            raise UserError(f"no runs in {directory}")
        return runs[-1]
    exact = [r for r in runs if r.id == ref]
    matches = exact or [r for r in runs if r.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"no run {ref!r} in {directory} (see `cockpit runs`)")
    raise UserError(f"run {ref!r} is ambiguous: {', '.join(r.id for r in matches)}")
