"""The workbook's small sheets: Summary (key figures, shares, trend, native charts) and one
sheet per grouping.

The workbook is written in constant_memory mode, so each sheet is written top to bottom,
row after row; the charts are native Excel charts over the cells written here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import xlsxwriter
from xlsxwriter.worksheet import Worksheet

from app.reports.excel_formats import CellFormats, write_value
from app.reports.params import ReportParams
from app.reports.summary import GroupTable, Summary
from app.reports.value_format import display, period_label

CHART_TOP = 10
PIE_SLICES = 8


def _key_figures(ws: Worksheet, f: CellFormats, p: ReportParams, summary: Summary, row: int) -> int:
    """Rows, each measure's total/average/min/max and the date range; returns the last row."""
    ws.write_string(row, 0, "Key figures", f.section)
    row += 1
    for col, text in enumerate(["Measure", "Total", "Average", "Min", "Max"]):
        ws.write_string(row, col, text, f.header)
    row += 1
    ws.write_string(row, 0, "Rows", f.label)
    ws.write_number(row, 1, summary.rows, f.integer)
    row += 1
    for name in p.measures:
        t = summary.totals[name]
        ws.write_string(row, 0, name, f.label)
        for col, value in enumerate([t.sum, t.avg, t.min, t.max], start=1):
            write_value(ws, row, col, value, f, f.number)
        row += 1
    if p.date_column:
        ws.write_string(row, 0, f"{p.date_column} range", f.label)
        write_value(ws, row, 1, summary.date_min, f)
        write_value(ws, row, 2, summary.date_max, f)
        row += 1
    return row


def _shares(
    wb: xlsxwriter.Workbook,
    ws: Worksheet,
    f: CellFormats,
    p: ReportParams,
    summary: Summary,
    row: int,
) -> tuple[int, Any]:
    """Shares of the last grouping: the top slices plus "Other", so the pie adds up to 100%.
    Returns the last row written and the pie chart (None when there is nothing to show)."""
    measures = p.measures
    column = p.group_by[-1]
    table = summary.groups[column]
    metric = measures[0] if measures else "rows"
    values = [(r.sums[0] if measures else r.count) or 0.0 for r in table.rows]
    total = (summary.totals[measures[0]].sum if measures else summary.rows) or 0.0
    head = list(zip(table.rows, values, strict=True))[: PIE_SLICES - 1]
    rest = total - sum(v for _, v in head)
    row += 1
    ws.write_string(row, 0, f"Share of {metric} by {column}", f.section)
    row += 1
    for col, text in enumerate([column, metric, "Share"]):
        ws.write_string(row, col, text, f.header)
    first = row + 1
    for r, value in head:
        row += 1
        ws.write_string(row, 0, display(r.key)[:255])
        ws.write_number(row, 1, value, f.number)
        ws.write_number(row, 2, value / total if total else 0, f.percent)
    if len(table.rows) > len(head) and abs(rest) > 1e-9:
        row += 1
        ws.write_string(row, 0, "Other")
        ws.write_number(row, 1, rest, f.number)
        ws.write_number(row, 2, rest / total if total else 0, f.percent)
    if row < first:
        return row, None
    pie = wb.add_chart({"type": "pie"})
    pie.add_series(
        {
            "name": f"{metric} by {column}",
            "categories": [ws.name, first, 0, row, 0],
            "values": [ws.name, first, 1, row, 1],
            "data_labels": {"percentage": True},
        }
    )
    pie.set_title({"name": f"Share of {metric} by {column}"})
    return row, pie


def _top_groups_bar(wb: xlsxwriter.Workbook, p: ReportParams, sheet: str, table: GroupTable) -> Any:
    """A bar chart of the first grouping's largest groups, read from its own sheet."""
    measures = p.measures
    n = min(CHART_TOP, len(table.rows))
    if not n:
        return None
    bar = wb.add_chart({"type": "bar"})
    value_col = 2 if measures else 1
    bar.add_series(
        {
            "name": f"{measures[0] if measures else 'rows'}",
            "categories": [sheet, 1, 0, n, 0],
            "values": [sheet, 1, value_col, n, value_col],
            "fill": {"color": "#2563eb"},
        }
    )
    metric = measures[0] if measures else "rows"
    bar.set_title({"name": f"{metric.capitalize()} by {table.column}: top {n}"})
    bar.set_y_axis({"reverse": True})
    bar.set_x_axis(value_axis(_charted(table, measures)))  # a bar's values run along x
    bar.set_legend({"none": True})
    return bar


def _trend(
    wb: xlsxwriter.Workbook,
    ws: Worksheet,
    f: CellFormats,
    p: ReportParams,
    summary: Summary,
    row: int,
) -> Any:
    """The trend table with growth of the first measure, and its line chart."""
    measures = p.measures
    row += 2
    ws.write_string(row, 0, f"Trend by {p.period}", f.section)
    row += 1
    headers = ["Period", "Start", "Rows", *measures]
    if measures:
        headers.append(f"{measures[0]} growth")
    for col, text in enumerate(headers):
        ws.write_string(row, col, text, f.header)
    first = row + 1
    previous: float | None = None
    for point in summary.trend:
        row += 1
        partial = summary.is_partial(point)
        label = period_label(point.start, p.period)
        ws.write_string(row, 0, f"{label} (partial)" if partial else label)
        ws.write_datetime(row, 1, point.start, f.date)
        ws.write_number(row, 2, point.count, f.integer)
        for j, value in enumerate(point.sums):
            write_value(ws, row, 3 + j, value, f, f.number)
        if measures:
            # Growth only between whole periods: a partial one is marked and compares nothing.
            current = None if partial else point.sums[0]
            if previous and current is not None:
                ws.write_number(
                    row, 3 + len(measures), (current - previous) / abs(previous), f.percent
                )
            previous = current
    line = wb.add_chart({"type": "line"})
    metric_col = 3 if measures else 2
    line.add_series(
        {
            "name": measures[0] if measures else "rows",
            "categories": [ws.name, first, 0, row, 0],
            "values": [ws.name, first, metric_col, row, metric_col],
            "line": {"color": "#2563eb", "width": 2},
        }
    )
    if len(measures) > 1:
        line.add_series(
            {
                "name": measures[1],
                "categories": [ws.name, first, 0, row, 0],
                "values": [ws.name, first, 4, row, 4],
                "line": {"color": "#f59e0b", "width": 2},
                "y2_axis": True,
            }
        )
    line.set_title({"name": f"Trend by {p.period}"})
    line.set_legend({"position": "bottom"})
    return line


def summary_sheet(
    wb: xlsxwriter.Workbook,
    ws: Worksheet,
    f: CellFormats,
    p: ReportParams,
    summary: Summary,
    description: str,
    group_sheets: dict[str, tuple[str, GroupTable]],
) -> None:
    """Title, key figures, shares and trend, with the charts to the right (trend first)."""
    ws.set_column(0, 0, 24)
    ws.set_column(1, 5 + len(p.measures), 15)
    ws.write_string(0, 0, p.title, f.title)
    ws.write_string(1, 0, description, f.subtle)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    ws.write_string(2, 0, f"Generated {generated} · filters: {p.filters_text()}", f.subtle)

    row = _key_figures(ws, f, p, summary, 4)
    charts: list[Any] = []
    if p.group_by:
        row, pie = _shares(wb, ws, f, p, summary, row)
        if pie is not None:
            charts.append(pie)
        bar = _top_groups_bar(wb, p, *group_sheets[p.group_by[0]])
        if bar is not None:
            charts.insert(0, bar)
    if p.date_column and summary.trend:
        charts.insert(0, _trend(wb, ws, f, p, summary, row))

    for i, chart in enumerate(charts):
        chart.set_size({"width": 620, "height": 300})
        ws.insert_chart(4 + 16 * i, 7 + len(p.measures), chart)


def group_sheet(
    wb: xlsxwriter.Workbook,
    ws: Worksheet,
    f: CellFormats,
    p: ReportParams,
    summary: Summary,
    table: GroupTable,
) -> None:
    """Every listed group of one column with its sums, averages and share, and a chart."""
    measures = p.measures
    headers = [table.column, "Rows"]
    for m in measures:
        headers += [f"Sum of {m}", f"Average {m}"]
    headers.append(f"Share of {measures[0] if measures else 'rows'}")
    ws.set_column(0, 0, 28)
    ws.set_column(1, len(headers) - 1, 16)
    for col, text in enumerate(headers):
        ws.write_string(0, col, text, f.header)
    for i, r in enumerate(table.rows, start=1):
        write_value(ws, i, 0, r.key, f)
        ws.write_number(i, 1, r.count, f.integer)
        for j in range(len(measures)):
            write_value(ws, i, 2 + 2 * j, r.sums[j], f, f.number)
            write_value(ws, i, 3 + 2 * j, r.avgs[j], f, f.number)
        share = summary.share(r.sums[0] if measures else float(r.count))
        write_value(ws, i, len(headers) - 1, None if share is None else share / 100, f, f.percent)
    last = len(table.rows)
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(last, 1), len(headers) - 1)
    if last < table.total_groups:
        ws.write_string(
            last + 2, 0, f"Top {last:,} of {table.total_groups:,} groups shown.", f.subtle
        )
    n = min(15, last)
    if n:
        chart = wb.add_chart({"type": "column"})
        value_col = 2 if measures else 1
        chart.add_series(
            {
                "name": headers[value_col],
                "categories": [ws.name, 1, 0, n, 0],
                "values": [ws.name, 1, value_col, n, value_col],
                "fill": {"color": "#2563eb"},
            }
        )
        chart.set_y_axis(value_axis(_charted(table, measures)))
        chart.set_title({"name": f"{headers[value_col]} by {table.column}: top {n}"})
        chart.set_legend({"none": True})
        chart.set_size({"width": 620, "height": 300})
        ws.insert_chart(1, len(headers) + 1, chart)


def _charted(table: GroupTable, measures: list[str]) -> list[float | None]:
    """The values a group chart plots: the first measure's sums, or the row counts."""
    return [row.sums[0] if measures else float(row.count) for row in table.rows]


def value_axis(values: list[float | None]) -> dict[str, Any]:
    """A value axis that starts at zero, so bar lengths compare (Excel and LibreOffice
    otherwise start it near the smallest bar: 940,000 for values of about a million). With
    a negative value the axis is left to cross zero by itself."""
    if any(value is not None and value < 0 for value in values):
        return {}
    return {"min": 0}
