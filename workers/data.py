"""Stage data: builtin sets or user files, as the datasets.Dataset each TRL trainer reads."""
from __future__ import annotations

from core.config import DataSpec
from core.datafiles import DataError, read_rows
from core.kinds import data_rows
from workers.builtin import builtin_rows


def load_rows(data: str | DataSpec, required: tuple, cap: int | None = None) -> list[dict]:
    """The rows of a data source (each carrying `required` fields), at most its `limit` and at most `cap`."""
    spec = data if isinstance(data, DataSpec) else DataSpec(source=data)
    if spec.source.startswith("builtin:"):
        rows = builtin_rows(spec.source.split(":", 1)[1])
    else:
        rows = read_rows(spec.source, required, spec.on_error)
    for bound in (spec.limit, cap):
        if bound:
            rows = rows[:bound]
    return rows


def training_dataset(stage, rows_needed: int):
    """A Dataset of the stage's `data:` for its trainer; rows beyond what `steps` consume are not tokenized."""
    from datasets import Dataset

    rows = load_rows(stage.config.data, data_rows(stage.kind, on_policy=False), cap=rows_needed)
    if stage.kind == "pretrain":
        rows = [{"text": r["text"]} for r in rows]
    elif stage.kind == "sft":
        rows = [_sft_row(r) for r in rows]
    return Dataset.from_list(rows)


def _sft_row(row: dict) -> dict:
    """Keep only the conversational fields SFTTrainer reads (messages, or prompt + completion)."""
    if "messages" in row:
        return {"messages": row["messages"]}
    if "completion" not in row:
        raise DataError("an sft row needs `messages`, or `prompt` and `completion`")
    return {"prompt": row["prompt"], "completion": row["completion"]}
