"""Plain-text and JSON output for the jobs commands.

Job text is untrusted: text output shows it through pyagent.safetext (table cells and
`quoted` in single-line mode, blocks escaped by the caller in block mode); JSON keeps the
exact text, with the characters a terminal acts on written as \\u escapes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta
from enum import Enum
from typing import Any

from pyagent.duration import format_duration, rounded
from pyagent.safetext import safe_json, safe_text


def duration(value: timedelta | None) -> str:
    """A run's or a step's duration as shown: `1.25 s`, `3 m 4 s`, `2 h 5 m`; `-` if none."""
    if value is None:
        return "-"
    return format_duration(rounded(value.total_seconds()))


def seconds(value: timedelta | None) -> float | None:
    return round(value.total_seconds(), 6) if value is not None else None


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last column is not padded. Cells are
    escaped here (single-line), so pass them raw: one row stays one line."""
    safe_rows = [[safe_text(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in safe_rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *safe_rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [row[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def quoted(text: str) -> str:
    """A name inside a sentence: 'name', escaped to one safe line."""
    return f"'{safe_text(text)}'"


def shorten(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def indent(text: str, prefix: str = "    ") -> str:
    """Each line of an (already escaped) block behind `prefix`."""
    return "\n".join(prefix + line if line else prefix.rstrip() for line in text.splitlines())


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def to_json(data: Any) -> str:
    return safe_json(json.dumps(data, default=_default, indent=2, ensure_ascii=False))
