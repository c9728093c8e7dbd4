"""Reading user data files (.jsonl, .parquet, .txt), with broken rows reported by file and line."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from core.errors import ConfigError


class DataError(ConfigError):
    """A data file that cannot be used; names the file and the line."""


def read_rows(path: str | Path, required: tuple, on_error: str = "fail", limit: int | None = None,
              columns: dict[str, str] | None = None) -> list[dict]:
    """Rows of a .jsonl (one JSON object per line), .parquet, or .txt (one `text` per line) file.

    `columns` renames fields first ({"instruction": "prompt", "output": "completion"}). `required`: the
    fields each row must then carry (core.kinds' row tuples; a tuple inside = one of these). A broken or
    incomplete row raises DataError with its line (row number for Parquet), unless on_error="skip".
    """
    path = Path(path)
    rows: list[dict] = []
    for number, record in _records(path):
        try:
            rows.append(_checked(_renamed(_parsed(record), columns or {}), required))
        except ValueError as exc:
            if on_error == "fail":
                raise DataError(f"{exc} (set on_error: skip to drop such rows)", str(path), number) from None
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise DataError("data file has no usable rows", str(path))
    return rows


def _records(path: Path) -> Iterator[tuple[int, object]]:
    """(line or row number, raw record) of a data file."""
    try:
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            yield from enumerate(pq.read_table(path).to_pylist(), start=1)
            return
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError)
        raise DataError(f"cannot read data file: {exc}", str(path)) from None
    text = path.suffix == ".txt"
    yield from ((n, {"text": line} if text else line) for n, line in enumerate(lines, start=1) if line.strip())


def _parsed(record) -> dict:
    if isinstance(record, dict):
        return record
    try:
        row = json.loads(record)
    except json.JSONDecodeError as exc:
        raise ValueError(f"broken JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(row, dict):
        raise ValueError("a row must be a JSON object")
    return row


def _renamed(row: dict, columns: dict[str, str]) -> dict:
    return {columns.get(k, k): v for k, v in row.items()} if columns else row


def _checked(row: dict, required: tuple) -> dict:
    for need in required:
        options = need if isinstance(need, tuple) else (need,)
        if not any(k in row for k in options):
            raise ValueError(f"row lacks field {' or '.join(repr(o) for o in options)}")
    return row
