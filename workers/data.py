"""Stage data: builtin sets or user files, as the datasets.Dataset each TRL trainer reads."""
from __future__ import annotations

from typing import Callable

from core.config import DataSpec
from core.datafiles import read_rows
from workers.builtin import builtin_rows


def load_rows(data: str | DataSpec, required: tuple, cap: int | None = None) -> list[dict]:
    """The rows of a data source (each carrying `required` fields), at most its `limit` and at most `cap`."""
    spec = data if isinstance(data, DataSpec) else DataSpec(source=data)
    if spec.source.startswith("builtin:"):
        rows = builtin_rows(spec.source.split(":", 1)[1])
    else:
        rows = read_rows(spec.source, required, spec.on_error, columns=spec.columns)
    for bound in (spec.limit, cap):
        if bound:
            rows = rows[:bound]
    return rows


def training_dataset(stage, rows_needed: int, shape: Callable[[dict], dict] | None = None):
    """A Dataset of the stage's `data:` for its trainer, each row through the kind's `shape` (e.g. keeping
    only the fields the trainer reads); rows beyond what `steps` consume are not tokenized."""
    from datasets import Dataset

    rows = load_rows(stage.config.data, stage.config.row_fields(), cap=rows_needed)
    return Dataset.from_list([shape(r) for r in rows] if shape else rows)
