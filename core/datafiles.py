"""Reading user data files (.jsonl, .txt), with broken rows reported by file and line."""
from __future__ import annotations

import json
from pathlib import Path

from core.errors import ConfigError


class DataError(ConfigError):
    """A data file that cannot be used; names the file and the line."""


def read_rows(path: str | Path, required: tuple, on_error: str = "fail", limit: int | None = None) -> list[dict]:
    """Rows of a .jsonl (one JSON object per line) or .txt (one `text` per line) file.

    `required`: the fields each row must carry (core.kinds' row tuples; a tuple inside = one of these).
    A broken or incomplete row raises DataError with its line, unless on_error="skip".
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read data file: {exc}", str(path)) from None
    rows: list[dict] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(_parse_row(path, line, required))
        except ValueError as exc:
            if on_error == "fail":
                raise DataError(f"{exc} (set on_error: skip to drop such rows)", str(path), number) from None
        if limit and len(rows) >= limit:
            break
    if not rows:
        raise DataError("data file has no usable rows", str(path))
    return rows


def _parse_row(path: Path, line: str, required: tuple) -> dict:
    if path.suffix == ".txt":
        return {"text": line}
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"broken JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(row, dict):
        raise ValueError("a row must be a JSON object")
    for need in required:
        options = need if isinstance(need, tuple) else (need,)
        if not any(k in row for k in options):
            raise ValueError(f"row lacks field {' or '.join(repr(o) for o in options)}")
    return row
