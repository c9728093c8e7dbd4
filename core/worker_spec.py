"""The supervisor -> stage worker contract (`spec.json`): written and read through the config models."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import Field, ValidationError

from core.config import DataSpec, ModelSpec, StageSpec, Strict, TrainSpec
from core.errors import SpecError

LATEST = "latest"  # resume_from: the newest checkpoint that verifies when the worker starts (a restarted job)


class ExpertInput(Strict):
    """One expert of a route stage: its stage name, its final adapter folder, and its training data."""

    name: str
    path: str
    data: Union[str, DataSpec]


class WorkerSpec(Strict):
    """Everything one attempt of one stage needs; `train_overrides` are the supervisor's OOM retreats."""

    run_dir: str
    db: str
    output_dir: str
    stage: StageSpec
    model: ModelSpec = Field(default_factory=ModelSpec)
    sandbox: Literal["strict", "weak"] = Field("strict", description="the curriculum's sandbox setting, for code rewards")
    attempt: int = 1
    input_model: Optional[str] = Field(None, description="the parent stage's final folder; None = model.base")
    teacher_model: Optional[str] = Field(None, description="a distill stage's teacher folder (a stage's final "
                                         "folder or a local model folder); None = model.base")
    experts: list[ExpertInput] = Field(default_factory=list, description="a route stage's experts")
    resume_from: Optional[str] = Field(None, description="a checkpoint folder to resume the trainer from, or "
                                       "latest")
    train_overrides: dict[str, Any] = Field(default_factory=dict)

    def train(self) -> TrainSpec:
        """The stage's TrainSpec with the overrides applied (validated like the config)."""
        return TrainSpec.model_validate({**self.stage.train.model_dump(), **self.train_overrides})

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.model_dump(mode="json", by_alias=True), indent=2))
        return path


def read_spec(path: str | Path) -> WorkerSpec:
    """A spec.json, validated; SpecError names what is wrong."""
    try:
        raw = json.loads(Path(path).read_text())
        return WorkerSpec.model_validate(raw)
    except (OSError, json.JSONDecodeError) as exc:
        raise SpecError(f"cannot read spec {path}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise SpecError(f"spec {path} is not valid: {problems}") from None
