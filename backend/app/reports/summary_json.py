"""The shared summary's groupings and trend as the analysis JSON shows them.

Growth rates are added here, not queried: they compare neighbouring periods of a trend that
is already small. A partial first or last period (`partial: true`) is left out of them.
"""

from __future__ import annotations

from typing import Any

from app.reports.statistics import growth_pct, same_period_last_year
from app.reports.summary import Summary, TrendRow
from app.reports.value_format import jsonable, period_label


def trend_json(
    summary: Summary, measures: list[str], date_column: str | None
) -> dict[str, Any] | None:
    """The time trend with period-over-period and year-over-year growth rates."""
    if not date_column:
        return None
    by_start = {row.start: row for row in summary.trend}
    points = []
    previous: TrendRow | None = None
    for row in summary.trend:
        # Period over period: only between whole periods (a partial one compares nothing).
        base = summary.comparable(previous) if summary.comparable(row) else None
        last_year = same_period_last_year(row.start, summary.period)
        ly = by_start.get(last_year) if last_year else None
        points.append(
            {
                "period": period_label(row.start, summary.period),
                "start": row.start.isoformat(),
                "partial": summary.is_partial(row),
                "rows": row.count,
                "sums": {m: jsonable(v) for m, v in zip(measures, row.sums, strict=True)},
                "growth_pct": {
                    m: growth_pct(row.sums[j], base.sums[j] if base else None)
                    for j, m in enumerate(measures)
                },
                "rows_growth_pct": growth_pct(row.count, base.count if base else None),
                "yoy_pct": {
                    m: growth_pct(row.sums[j], ly.sums[j] if ly else None)
                    for j, m in enumerate(measures)
                },
            }
        )
        previous = row
    overall = None
    whole = [row for row in summary.trend if not summary.is_partial(row)]
    if len(whole) >= 2 and measures:
        first, last = whole[0], whole[-1]
        overall = {m: growth_pct(last.sums[j], first.sums[j]) for j, m in enumerate(measures)}
    return {
        "column": date_column,
        "period": summary.period,
        "points": points,
        "first_to_last_growth_pct": overall,
    }


def groups_json(summary: Summary) -> dict[str, Any]:
    """Each grouping's largest groups, with their sums, means and share of the total."""
    out: dict[str, Any] = {}
    for column, table in summary.groups.items():
        out[column] = {
            "total_groups": table.total_groups,
            "shown": len(table.rows),
            "sorted_by": f"sum of {summary.measures[0]}" if summary.measures else "rows",
            "top": [
                {
                    "value": jsonable(row.key),
                    "rows": row.count,
                    "sums": {
                        m: jsonable(v) for m, v in zip(summary.measures, row.sums, strict=True)
                    },
                    "means": {
                        m: jsonable(v) for m, v in zip(summary.measures, row.avgs, strict=True)
                    },
                    "share_pct": jsonable(
                        summary.share(row.sums[0] if summary.measures else float(row.count))
                    ),
                }
                for row in table.rows
            ],
        }
    return out
