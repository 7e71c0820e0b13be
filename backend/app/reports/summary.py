"""What the shared summary holds: totals, groupings and a time trend of the filtered rows.

Every builder shows these first, so they are plain records that `queries.py` fills and the
PDF, the workbook and the analysis JSON read. Sums and averages are None where DuckDB found
no value (an empty group, an all-null measure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from app.reports.statistics import is_partial


@dataclass
class MeasureTotals:
    sum: float | None
    avg: float | None
    min: float | None
    max: float | None


@dataclass
class GroupRow:
    """One group: its key, row count, and per measure (in `Summary.measures` order) the sum
    and the average."""

    key: Any
    count: int
    sums: list[float | None]
    avgs: list[float | None]


@dataclass
class GroupTable:
    """The largest groups of one column, and how many groups there are in all."""

    column: str
    rows: list[GroupRow]
    total_groups: int


@dataclass
class TrendRow:
    """One period, by its first day: row count and the sum of each measure."""

    start: date
    count: int
    sums: list[float | None]


@dataclass
class Summary:
    """Totals, groupings and trend of the filtered data: what every report shows first."""

    rows: int
    measures: list[str]
    totals: dict[str, MeasureTotals]
    date_min: Any = None
    date_max: Any = None
    groups: dict[str, GroupTable] = field(default_factory=dict)
    trend: list[TrendRow] = field(default_factory=list)
    period: str = "month"

    def is_partial(self, row: TrendRow) -> bool:
        """The data covers only part of this period (the first or the last of the trend)."""
        return is_partial(row.start, self.period, self.date_min, self.date_max)

    def comparable(self, row: TrendRow | None) -> TrendRow | None:
        """`row` if a period-over-period change may use it (a whole period), else None."""
        return None if row is None or self.is_partial(row) else row

    def share(self, value: float | None, measure_index: int = 0) -> float | None:
        """Percent of the grand total of a measure (of the row count when no measures)."""
        if value is None:
            return None
        if not self.measures:
            total: float | None = float(self.rows)
        else:
            total = self.totals[self.measures[measure_index]].sum
        return 100.0 * value / total if total else None


@dataclass
class Breakdown:
    """One group's own trend and its split by the next group_by column."""

    key: Any
    trend: list[TrendRow]
    by_second: list[GroupRow]
