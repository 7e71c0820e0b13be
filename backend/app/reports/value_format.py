"""Values from DuckDB as people read them (group keys, period names) and as JSON allows.

Shared by the PDF, the workbook and the analysis, so a period or a blank key reads the same
in all three.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Any

from app.reports.locale_style import current


def period_label(start: date, period: str) -> str:
    """The name of the period starting on `start`: 2024, 2024-Q1, 2024-01, or the date."""
    if period == "year":
        return f"{start.year}"
    if period == "quarter":
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    if period == "month":
        return f"{start.year}-{start.month:02d}"
    return start.isoformat()


def display(value: Any) -> str:
    """A group key as a person reads it."""
    if value is None:
        return "(blank)"
    if isinstance(value, float):
        return current().short(value)
    if isinstance(value, datetime | date):
        return current().date(value)
    return str(value)


def finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: turn them into None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def jsonable(value: Any) -> Any:
    """Values from DuckDB made JSON-safe (dates as ISO text, no NaN, decimals as floats)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return finite(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    try:
        return finite(float(value))
    except (TypeError, ValueError):
        return str(value)
