"""The analysis report's result: column statistics, groups, trend, correlations, outliers.

This module decides what the analysis contains and lays it out as JSON; the queries are in
`queries.py` and the arithmetic on their results in `statistics.py`. The HTML page is drawn
from the result by `analysis_html.py`.
"""

from __future__ import annotations

import time
from typing import Any

from app.reports import queries
from app.reports.columns import column_kind
from app.reports.datasets import OpenedDataset, Tick
from app.reports.params import ReportParams
from app.reports.progress import Progress
from app.reports.statistics import (
    OUTLIER_METHOD,
    TUKEY_K,
    bracketing_ranks,
    interpolate,
    quartile_positions,
    sample_std,
    tukey_fences,
)
from app.reports.summary import MeasureTotals, Summary
from app.reports.summary_json import groups_json, trend_json
from app.reports.value_format import jsonable

ANALYSIS_TOP_GROUPS = 50
TOP_VALUES = 5
OUTLIER_EXAMPLES = 5
MAX_STATS_COLUMNS = 100
MAX_CORRELATION_COLUMNS = 12
MAX_OUTLIER_CONTEXT_COLUMNS = 6


def _numeric_statistics(
    ds: OpenedDataset, name: str, count: int, mean: float | None, *, tick: Tick | None
) -> dict[str, Any]:
    """Distinct count, sample standard deviation and exact quartiles of a numeric column,
    from one value-histogram query (the deviation is two-pass around `mean`)."""
    positions = quartile_positions(count)
    distinct, squares, picks = queries.value_histogram(
        ds, name, ranks=bracketing_ranks(positions), center=mean, tick=tick
    )
    p25, median, p75 = interpolate(positions, picks)
    return {
        "distinct": distinct,
        "std": jsonable(sample_std(squares, count)),
        "p25": jsonable(p25),
        "median": jsonable(median),
        "p75": jsonable(p75),
    }


def column_statistics(ds: OpenedDataset, *, tick: Tick | None = None) -> dict[str, dict[str, Any]]:
    """count, nulls, exact distinct count and type-specific statistics for every column.

    One scan for the plain aggregates; then per numeric column one value-histogram query
    (distinct, std, exact quartiles); per other column a DISTINCT count, and for text its
    most frequent values. Separate small queries on purpose: mixing DISTINCT with plain
    aggregates, or several DISTINCTs in one SELECT, makes DuckDB pick plans 2-10x slower.
    """
    columns = list(ds.columns.items())[:MAX_STATS_COLUMNS]
    total, aggregates = queries.column_aggregates(ds, columns, tick=tick)
    out: dict[str, dict[str, Any]] = {}
    for name, duck_type in columns:
        stats: dict[str, Any] = {"type": duck_type, "kind": column_kind(duck_type)}
        stats.update((f, jsonable(v)) for f, v in aggregates[name].items())
        stats["nulls"] = total - int(stats["count"] or 0)
        out[name] = stats

    for name, stats in out.items():
        kind = stats["kind"]
        if kind in {"integer", "number"}:
            if stats["count"]:
                count = int(stats["count"])
                stats.update(_numeric_statistics(ds, name, count, stats["mean"], tick=tick))
            else:
                stats.update(distinct=0, std=None, p25=None, median=None, p75=None)
            continue
        stats["distinct"] = queries.distinct_count(ds, name, tick=tick)
        if kind == "string" and total:
            top = queries.top_values(ds, name, limit=TOP_VALUES, tick=tick)
            stats["top_values"] = [{"value": v, "count": n} for v, n in top]
    return out


def correlations(
    ds: OpenedDataset, measures: list[str], *, tick: Tick | None = None
) -> dict[str, Any]:
    """Pearson correlation matrix of the measures (pairwise complete rows)."""
    cols = measures[:MAX_CORRELATION_COLUMNS]
    pairs = [(a, b) for i, a in enumerate(cols) for b in cols[i + 1 :]]
    matrix = [[1.0 if a == b else None for b in cols] for a in cols]
    if pairs:
        values = queries.correlations(ds, pairs, tick=tick)
        for (a, b), v in zip(pairs, values, strict=True):
            i, j = cols.index(a), cols.index(b)
            matrix[i][j] = matrix[j][i] = jsonable(v)
    return {"method": "pearson", "columns": cols, "matrix": matrix}


def outliers(
    ds: OpenedDataset,
    measures: list[str],
    stats: dict[str, dict[str, Any]],
    *,
    context_columns: list[str],
    tick: Tick | None = None,
) -> dict[str, Any]:
    """Tukey-fence outliers per measure: fences, counts, share, and the most extreme rows.

    One scan counts every measure's outliers; the examples come from top-N queries that
    only keep rows beyond a fence, which DuckDB answers without sorting the data.
    """
    result: dict[str, Any] = {"method": OUTLIER_METHOD, "k": TUKEY_K, "measures": {}}
    usable = [m for m in measures if stats.get(m, {}).get("p25") is not None]
    if not usable:
        return result
    shown = [c for c in context_columns if c in ds.columns][:MAX_OUTLIER_CONTEXT_COLUMNS]
    quartiles = {m: (float(stats[m]["p25"]), float(stats[m]["p75"])) for m in usable}
    fences = {m: tukey_fences(q1, q3) for m, (q1, q3) in quartiles.items()}
    total, counts = queries.beyond_fences(ds, fences, tick=tick)
    for measure in usable:
        (q1, q3), (low, high) = quartiles[measure], fences[measure]
        below, above = counts[measure]
        picked = list(dict.fromkeys([*shown, measure]))

        def examples(
            beyond: str,
            fence: float,
            count: int,
            picked: list[str] = picked,
            measure: str = measure,
        ) -> list[dict[str, Any]]:
            if not count:
                return []
            rows = queries.extreme_rows(
                ds, picked, measure, beyond=beyond, fence=fence, limit=OUTLIER_EXAMPLES, tick=tick
            )
            return [{c: jsonable(v) for c, v in zip(picked, r, strict=True)} for r in rows]

        result["measures"][measure] = {
            "q1": q1,
            "q3": q3,
            "iqr": q3 - q1,
            "low_fence": low,
            "high_fence": high,
            "below": below,
            "above": above,
            "count": below + above,
            "share_pct": 100.0 * (below + above) / total if total else 0.0,
            "examples_high": examples("above", high, above),
            "examples_low": examples("below", low, below),
        }
    return result


def _summary_from_stats(stats: dict[str, dict[str, Any]], p: ReportParams) -> Summary:
    """The totals the column statistics already hold (saves a scan)."""
    rows = next((int(s["count"]) + int(s["nulls"]) for s in stats.values()), 0)
    summary = Summary(
        rows=rows,
        measures=list(p.measures),
        period=p.period,
        totals={
            m: MeasureTotals(stats[m]["sum"], stats[m]["mean"], stats[m]["min"], stats[m]["max"])
            for m in p.measures
        },
    )
    if p.date_column:
        summary.date_min = stats[p.date_column]["min"]
        summary.date_max = stats[p.date_column]["max"]
    return summary


def analyze(ds: OpenedDataset, p: ReportParams, progress: Progress) -> dict[str, Any]:
    """The analysis result: statistics, groups, trend, correlations and outliers."""
    started = time.perf_counter()
    progress.stage(5, 35, "Column statistics")
    stats = column_statistics(ds, tick=progress.tick)
    summary = _summary_from_stats(stats, p)
    steps = len(p.group_by) + 1
    for i, column in enumerate(p.group_by):
        progress.stage(35 + 25 * i / steps, 35 + 25 * (i + 1) / steps, f"Grouping by {column}")
        summary.groups[column] = queries.group_table(
            ds, column, p.measures, limit=ANALYSIS_TOP_GROUPS, tick=progress.tick
        )
    if p.date_column:
        progress.stage(35 + 25 * (steps - 1) / steps, 60, f"Trend by {p.period}")
        summary.trend = queries.trend(ds, p.date_column, p.period, p.measures, tick=progress.tick)
    progress.stage(60, 75, "Correlations")
    corr = correlations(ds, p.measures, tick=progress.tick)
    progress.stage(75, 90, "Outliers")
    context = [*p.group_by, *([p.date_column] if p.date_column else [])]
    outl = outliers(ds, p.measures, stats, context_columns=context, tick=progress.tick)
    return {
        "title": p.title,
        "dataset": ds.description,
        "filters": p.filters,
        "rows": summary.rows,
        "measures": p.measures,
        "group_by": p.group_by,
        "date_column": p.date_column,
        "totals": {
            m: {k: jsonable(v) for k, v in vars(t).items()} for m, t in summary.totals.items()
        },
        "date_range": [jsonable(summary.date_min), jsonable(summary.date_max)],
        "columns": stats,
        "groups": groups_json(summary),
        "trend": trend_json(summary, p.measures, p.date_column),
        "correlations": corr,
        "outliers": outl,
        "seconds": round(time.perf_counter() - started, 3),
    }
