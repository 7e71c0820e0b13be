"""The PDF report's tables: KPI cards, measure totals, the trend and the group tables.

All are platypus Tables in one striped style whose header repeats on every page it spans;
they hold at most a few hundred rows (the raw rows are `pdf_detail_rows.py`'s job).
"""

from __future__ import annotations

from typing import Any

from reportlab.lib import colors
from reportlab.lib.styles import ParagraphStyle
from reportlab.platypus import Paragraph, Table, TableStyle

from app.reports import charts
from app.reports.params import ReportParams
from app.reports.pdf_fonts import SANS, SANS_BOLD
from app.reports.pdf_styles import ACCENT, LINE, ZEBRA
from app.reports.pdf_text import (
    clip,
    esc,
    fmt_growth,
    fmt_measure,
    fmt_pct,
    fmt_sums,
)
from app.reports.summary import GroupTable, Summary, TrendRow
from app.reports.value_format import display, period_label

MAX_TABLE_GROUPS = 500


def striped_table(
    data: list[list[Any]],
    widths: list[float],
    *,
    numeric_from: int = 1,
    repeat: int = 1,
    font_size: float = 8,
) -> Table:
    """A striped table whose header repeats on every page it spans."""
    table = Table(data, colWidths=widths, repeatRows=repeat)
    style = [
        ("FONT", (0, 0), (-1, -1), SANS, font_size),
        ("FONT", (0, 0), (-1, 0), SANS_BOLD, font_size),
        ("TEXTCOLOR", (0, 0), (-1, 0), colors.white),
        ("BACKGROUND", (0, 0), (-1, 0), ACCENT),
        ("ROWBACKGROUNDS", (0, 1), (-1, -1), [colors.white, ZEBRA]),
        ("ALIGN", (numeric_from, 0), (-1, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
        ("LINEBELOW", (0, 0), (-1, 0), 0.8, ACCENT),
        ("LINEBELOW", (0, -1), (-1, -1), 0.5, LINE),
    ]
    table.setStyle(TableStyle(style))
    return table


def first_and_rest(width: float, first: float, columns: int) -> list[float]:
    """Column widths: the first `first` wide, the others sharing the rest equally."""
    return [first] + [(width - first) / (columns - 1)] * (columns - 1)


def kpi_cards(
    summary: Summary, p: ReportParams, styles: dict[str, ParagraphStyle], width: float
) -> Table:
    cards: list[tuple[str, str]] = [("Rows", f"{summary.rows:,}")]
    for m in p.measures[:5]:
        cards.append((f"Total {m}", charts.fmt_short(summary.totals[m].sum or 0)))
    if p.date_column and summary.date_min is not None:
        cards.append(("Period", f"{display(summary.date_min)} to {display(summary.date_max)}"))
    per_row = 3
    cells = [
        [
            Paragraph(esc(label), styles["kpi_label"]),
            Paragraph(esc(value), styles["kpi_value"] if len(value) < 16 else styles["body"]),
        ]
        for label, value in cards
    ]
    while len(cells) % per_row:
        cells.append([Paragraph("", styles["kpi_label"]), Paragraph("", styles["body"])])
    grid = [cells[i : i + per_row] for i in range(0, len(cells), per_row)]
    col_w = width / per_row
    # Every table names its cells' font: a cell holding a Paragraph still sets the table's
    # font first, and ReportLab's default is Helvetica.
    sans = TableStyle([("FONT", (0, 0), (-1, -1), SANS)])
    table = Table(
        [
            [Table([[c[0]], [c[1]]], colWidths=[col_w - 14], style=sans) for c in row]
            for row in grid
        ],
        colWidths=[col_w] * per_row,
    )
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), SANS),
                ("BACKGROUND", (0, 0), (-1, -1), ZEBRA),
                ("BOX", (0, 0), (-1, -1), 0.5, colors.white),
                ("INNERGRID", (0, 0), (-1, -1), 4, colors.white),
                ("TOPPADDING", (0, 0), (-1, -1), 6),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
            ]
        )
    )
    return table


def totals_table(summary: Summary, p: ReportParams, width: float) -> Table:
    data: list[list[Any]] = [["Measure", "Total", "Average", "Min", "Max"]]
    for m in p.measures:
        t = summary.totals[m]
        data.append(
            [
                m,
                fmt_measure(p, m, t.sum),
                fmt_measure(p, m, t.avg, decimals=2),  # an average of counts has cents
                fmt_measure(p, m, t.min),
                fmt_measure(p, m, t.max),
            ]
        )
    first = width * 0.28
    return striped_table(data, [first] + [(width - first) / 4] * 4)


def trend_table(rows: list[TrendRow], p: ReportParams, width: float) -> Table:
    measures = p.measures[:3]
    header = ["Period", "Rows", *measures]
    if measures:
        header += [f"{measures[0]} vs prev.", "vs last year"]
    data: list[list[Any]] = [header]
    by_start = {r.start: r for r in rows}
    previous: TrendRow | None = None
    for r in rows:
        line = [
            period_label(r.start, p.period),
            f"{r.count:,}",
            *fmt_sums(p, r.sums, len(measures)),
        ]
        if measures:
            growth = None
            if previous and previous.sums[0]:
                growth = 100 * ((r.sums[0] or 0) - previous.sums[0]) / abs(previous.sums[0])
            last_year = None
            if p.period in {"month", "quarter", "year"}:
                ly = by_start.get(r.start.replace(year=r.start.year - 1))
                if ly and ly.sums[0]:
                    last_year = 100 * ((r.sums[0] or 0) - ly.sums[0]) / abs(ly.sums[0])
            line += [fmt_growth(growth), fmt_growth(last_year)]
        data.append(line)
        previous = r
    return striped_table(data, first_and_rest(width, width * 0.16, len(header)))


def groups_table(table: GroupTable, summary: Summary, p: ReportParams, width: float) -> Table:
    measures = p.measures[:3]
    header = [table.column, "Rows", *(f"Σ {m}" for m in measures)]
    if measures:
        header.append(f"avg {measures[0]}")
    header.append("Share")
    data: list[list[Any]] = [header]
    first = width * 0.3
    for r in table.rows[:MAX_TABLE_GROUPS]:
        line = [
            clip(display(r.key), first - 8),
            f"{r.count:,}",
            *fmt_sums(p, r.sums, len(measures)),
        ]
        if measures:
            line.append(fmt_measure(p, p.measures[0], r.avgs[0], decimals=2))
        line.append(fmt_pct(summary.share(r.sums[0] if p.measures else float(r.count))))
        data.append(line)
    return striped_table(data, first_and_rest(width, first, len(header)))
