"""A dataset's columns: what kind of value each DuckDB type holds, finding one by name, and
reading a caller's value as a column's kind.

Reports decide how to aggregate, filter, format and lay out a column from its kind, so the
classification is done once here. A lookup that fails names the closest existing column,
because "unknown column" alone leaves the caller guessing; a value that fails says what was
expected.
"""

from __future__ import annotations

import difflib
import math
from datetime import date, datetime
from typing import Any

from app.reports.errors import InvalidReportRequest

_INTEGER_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
}
_FLOAT_TYPES = {"FLOAT", "DOUBLE", "REAL"}


def column_kind(duck_type: str) -> str:
    """Classify a DuckDB type name: integer, number, date, timestamp, time, boolean, string,
    or other (lists, structs, blobs... shown as text)."""
    t = duck_type.upper().strip()
    if t in _INTEGER_TYPES:
        return "integer"
    if t in _FLOAT_TYPES or t.startswith("DECIMAL") or t.startswith("NUMERIC"):
        return "number"
    if t == "DATE":
        return "date"
    if t.startswith("TIMESTAMP") or t == "DATETIME":
        return "timestamp"
    if t.startswith("TIME"):
        return "time"
    if t == "BOOLEAN":
        return "boolean"
    if t == "VARCHAR" or t.startswith("VARCHAR(") or t in {"UUID", "ENUM"} or t.startswith("ENUM"):
        return "string"
    return "other"


def is_numeric(duck_type: str) -> bool:
    return column_kind(duck_type) in {"integer", "number"}


def is_temporal(duck_type: str) -> bool:
    return column_kind(duck_type) in {"date", "timestamp"}


def require_column(column: str, where: str, columns: dict[str, str]) -> str:
    """The DuckDB type of `column`; `InvalidReportRequest` naming the request field (`where`),
    the closest match and every available column when the dataset has no such column."""
    if column not in columns:
        hint = difflib.get_close_matches(column, list(columns), n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise InvalidReportRequest(
            f"unknown column {column!r} in {where}{did_you_mean}; "
            f"available columns: {', '.join(columns)}"
        )
    return columns[column]


def typed_value(column: str, kind: str, value: Any) -> int | float | date | bool | str:
    """A filter value read as the column's kind: a number, a date (a datetime for timestamps),
    a boolean or text. `InvalidReportRequest` for what cannot compare with the column."""
    if isinstance(value, list) or value is None:
        raise InvalidReportRequest(f"filter on {column!r}: expected a single value, got {value!r}")
    if kind in {"integer", "number"}:
        if isinstance(value, bool):
            raise InvalidReportRequest(f"filter on {column!r}: expected a number, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                raise InvalidReportRequest(
                    f"filter on {column!r}: expected a number, got {value!r}"
                ) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidReportRequest(f"filter on {column!r}: number must be finite")
        number: int | float = value
        return number
    if kind in {"date", "timestamp"}:
        text = str(value)
        try:
            return date.fromisoformat(text) if kind == "date" else datetime.fromisoformat(text)
        except ValueError:
            raise InvalidReportRequest(
                f"filter on {column!r}: expected an ISO date like 2024-01-31, got {value!r}"
            ) from None
    if kind == "boolean":
        if isinstance(value, bool):
            return value
        if str(value).lower() in {"true", "false"}:
            return str(value).lower() == "true"
        raise InvalidReportRequest(f"filter on {column!r}: expected true or false, got {value!r}")
    return str(value)
