"""Stage data: builtin sets or user files, as the datasets.Dataset each TRL trainer reads."""
from __future__ import annotations

from core.datafiles import DataError, read_rows
from workers.builtin import builtin_rows

# The `use` that core.datafiles checks required fields for, per stage kind.
USE_OF_KIND = {"pretrain": "pretrain", "sft": "sft", "dpo": "dpo", "grpo": "grpo", "eval": "eval"}


def source_of(data) -> tuple[str, str, int | None]:
    """(source, on_error, limit) of a stage's `data:` (a string or a DataSpec dump)."""
    if isinstance(data, str):
        return data, "fail", None
    return data["source"], data.get("on_error", "fail"), data.get("limit")


def load_rows(data, use: str, cap: int | None = None) -> list[dict]:
    """The rows of a data source, at most `limit` (from the spec) and at most `cap`."""
    source, on_error, limit = source_of(data)
    if source.startswith("builtin:"):
        rows = builtin_rows(source.split(":", 1)[1])
    else:
        rows = read_rows(source, USE_OF_KIND.get(use, use), on_error)
    for bound in (limit, cap):
        if bound:
            rows = rows[:bound]
    return rows


def training_dataset(data, kind: str, rows_needed: int):
    """A Dataset for a trainer; rows beyond what `steps` consume are not tokenized."""
    from datasets import Dataset

    rows = load_rows(data, kind, cap=rows_needed)
    if kind == "pretrain":
        rows = [{"text": r["text"]} for r in rows]
    elif kind == "sft":
        rows = [_sft_row(r) for r in rows]
    return Dataset.from_list(rows)


def _sft_row(row: dict) -> dict:
    """Keep only the conversational fields SFTTrainer reads (messages, or prompt + completion)."""
    if "messages" in row:
        return {"messages": row["messages"]}
    if "completion" not in row:
        raise DataError("an sft row needs `messages`, or `prompt` and `completion`")
    return {"prompt": row["prompt"], "completion": row["completion"]}
