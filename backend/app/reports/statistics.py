"""The arithmetic of the analysis on numbers the queries returned: quartiles, deviation,
outlier fences, growth rates, partial periods. No SQL and no I/O, so each rule can be read
(and checked against pandas) on its own.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta

from app.reports.value_format import finite

QUARTILES = (0.25, 0.5, 0.75)
TUKEY_K = 1.5
OUTLIER_METHOD = (
    "Tukey's fences: a value is an outlier when it lies below Q1 - 1.5 x IQR or above "
    "Q3 + 1.5 x IQR, where Q1 and Q3 are the 25th and 75th percentiles (linear interpolation) "
    "and IQR = Q3 - Q1"
)


def quartile_positions(count: int) -> list[float]:
    """Where Q1, the median and Q3 fall among `count` sorted values (0-based, fractional).

    Linear interpolation between the order statistics at q * (n - 1), as DuckDB's
    quantile_cont and pandas' default do.
    """
    return [q * (count - 1) for q in QUARTILES]


def bracketing_ranks(positions: list[float]) -> list[int]:
    """The two order statistics around each position (floor, ceil), in order."""
    return [k for pos in positions for k in (math.floor(pos), math.ceil(pos))]


def interpolate(positions: list[float], picks: list[float | None]) -> list[float | None]:
    """Each position's value from its bracketing order statistics (`picks`, as laid out by
    `bracketing_ranks`); None where either is missing."""
    out: list[float | None] = []
    for i, pos in enumerate(positions):
        low, high = picks[2 * i], picks[2 * i + 1]
        if low is None or high is None:
            out.append(None)
        else:
            out.append(low + (high - low) * (pos - math.floor(pos)))
    return out


def sample_std(squares: float | None, count: int) -> float | None:
    """Sample standard deviation from the sum of squared deviations around the mean
    (two-pass, so no catastrophic cancellation)."""
    if count > 1 and squares is not None and squares >= 0:
        return math.sqrt(squares / (count - 1))
    return None


def tukey_fences(q1: float, q3: float) -> tuple[float, float]:
    """(low, high): values outside are outliers, see `OUTLIER_METHOD`."""
    iqr = q3 - q1
    return q1 - TUKEY_K * iqr, q3 + TUKEY_K * iqr


def growth_pct(current: float | None, previous: float | None) -> float | None:
    """Percent change from `previous`; None when there is nothing to compare with."""
    if current is None or previous is None or previous == 0:
        return None
    change: float | None = finite(100.0 * (current - previous) / abs(previous))
    return change


def same_period_last_year(start: date, period: str) -> date | None:
    """The start of the period a year before, for year-over-year growth (None for days)."""
    if period in {"month", "quarter", "year"}:
        return start.replace(year=start.year - 1)
    if period == "week":
        return start - timedelta(weeks=52)
    return None


def period_end(start: date, period: str) -> date:
    """The first day after the period that begins on `start` (DuckDB's date_trunc periods)."""
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(weeks=1)
    months = {"month": 1, "quarter": 3, "year": 12}[period]
    index = start.year * 12 + start.month - 1 + months
    if index // 12 > date.max.year:
        return date.max  # the period that holds the last representable day
    return date(index // 12, index % 12 + 1, 1)


def is_partial(start: date, period: str, first_day: object, last_day: object) -> bool:
    """Whether the data covers only part of the period beginning on `start`: it is the first
    period and the data begins after its first day, or the last one and the data ends before
    its last day. A change against a partial period misleads (+209 % from a quarter with
    three days of data), so it is marked and left out of period-over-period changes."""
    first, last = _day(first_day), _day(last_day)
    if first is None or last is None:
        return False
    return start < first or period_end(start, period) - timedelta(days=1) > last


def _day(value: object) -> date | None:
    """A date from what the queries return for a date column (a date, a timestamp, or the
    ISO text the column statistics keep)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and len(value) >= 10:
        try:
            return date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None
