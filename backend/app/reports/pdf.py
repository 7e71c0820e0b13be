"""PDF reports with ReportLab: cover, KPI summary, vector charts, grouped tables, a page per
top group, and a paginated detail section.

Charts are ReportLab drawings embedded as vector paths (no matplotlib PNGs). The detail
section is drawn straight onto the canvas, one flowable per page, and produced lazily from a
DuckDB cursor while platypus lays pages out: only a page of rows exists in Python at a time.
This module assembles the story and drives progress; the parts are the `pdf_*` modules.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.platypus import (
    CondPageBreak,
    Flowable,
    KeepTogether,
    NextPageTemplate,
    PageBreak,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from app.reports import charts, queries
from app.reports.datasets import OpenedDataset
from app.reports.params import ReportParams
from app.reports.pdf_detail_rows import (
    DETAIL_HEADER_HEIGHT,
    DETAIL_ROW_HEIGHT,
    detail_flowables,
    detail_layout,
)
from app.reports.pdf_document import LazyStory, ReportDoc
from app.reports.pdf_fonts import SANS, SANS_BOLD
from app.reports.pdf_group_pages import group_page
from app.reports.pdf_styles import LINE, MARGIN, paragraph_styles
from app.reports.pdf_tables import (
    MAX_TABLE_GROUPS,
    groups_table,
    kpi_cards,
    totals_table,
    trend_table,
)
from app.reports.pdf_text import esc
from app.reports.progress import Progress
from app.reports.summary import Summary
from app.reports.value_format import display, period_label

PDF_MIME = "application/pdf"
MAX_GROUP_PAGES = 200

Styles = dict[str, ParagraphStyle]


def _cover(
    ds: OpenedDataset, p: ReportParams, summary: Summary, styles: Styles, width: float
) -> list[Flowable]:
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    meta = [
        ["Generated", generated],
        ["Rows", f"{summary.rows:,}"],
        ["Filters", p.filters_text()],
        ["Grouped by", ", ".join(p.group_by) or "none"],
        ["Measures", ", ".join(p.measures) or "row counts"],
        ["Time axis", f"{p.date_column} by {p.period}" if p.date_column else "none"],
    ]
    meta_table = Table(
        [
            [Paragraph(f"<b>{esc(k)}</b>", styles["body"]), Paragraph(esc(v), styles["body"])]
            for k, v in meta
        ],
        colWidths=[32 * mm, width - 62 * mm],
    )
    meta_table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, -1), SANS),  # a cell's own font, not Helvetica
                ("LINEBELOW", (0, 0), (-1, -1), 0.4, LINE),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
            ]
        )
    )
    return [
        Paragraph(esc(p.title), styles["cover_title"]),
        Spacer(1, 8),
        Paragraph(esc(ds.description), styles["cover_sub"]),
        Spacer(1, 22),
        meta_table,
        NextPageTemplate("portrait"),
        PageBreak(),
    ]


def _grouping(
    column: str, summary: Summary, p: ReportParams, styles: Styles, width: float
) -> list[Flowable]:
    """One group_by column: bar chart of the top groups, pie of shares, then the table."""
    table = summary.groups[column]
    metric = p.measures[0] if p.measures else "rows"
    top = table.rows[:12]
    values = [(r.sums[0] if p.measures else r.count) or 0.0 for r in top]
    block: list[Flowable] = [Paragraph(f"By {esc(column)}", styles["h1"])]
    if top:
        block.append(
            charts.bar_chart(
                [display(r.key) for r in top],
                values,
                title=f"{metric.capitalize()} by {column}: top {len(top)}",
                width=width,
                height=max(120, 40 + 15 * len(top)),
                font=SANS,
                bold_font=SANS_BOLD,
            )
        )
    shares = [(r.sums[0] if p.measures else r.count) or 0.0 for r in table.rows]
    if sum(v for v in shares if v > 0) > 0:  # a pie of nothing (or of losses) says nothing
        block += [
            Spacer(1, 6),
            charts.pie_chart(
                [display(r.key) for r in table.rows],
                shares,
                title=f"Share of {metric}",
                width=width,
                height=170,
                font=SANS,
                bold_font=SANS_BOLD,
            ),
        ]
    note = f"{table.total_groups:,} groups" + (
        f"; the {min(len(table.rows), MAX_TABLE_GROUPS):,} largest are listed"
        if table.total_groups > MAX_TABLE_GROUPS
        else ""
    )
    return [
        KeepTogether(block),
        Spacer(1, 8),
        Paragraph(note, styles["note"]),
        Spacer(1, 4),
        groups_table(table, summary, p, width),
    ]


def _summary_pages(
    summary: Summary, p: ReportParams, styles: Styles, width: float
) -> list[Flowable]:
    """KPIs, totals, the trend chart, every grouping, then the trend table."""
    story: list[Flowable] = [
        Paragraph("Summary", styles["h1"]),
        kpi_cards(summary, p, styles, width),
        Spacer(1, 10),
    ]
    if p.measures:
        story += [totals_table(summary, p, width), Spacer(1, 12)]
    if summary.trend:
        labels = [period_label(r.start, p.period) for r in summary.trend]
        series = {m: [r.sums[j] for r in summary.trend] for j, m in enumerate(p.measures[:2])}
        story.append(
            charts.line_chart(
                labels,
                series or {"rows": [float(r.count) for r in summary.trend]},
                title=f"Trend by {p.period}",
                width=width,
                height=210,
                font=SANS,
                bold_font=SANS_BOLD,
            )
        )
    for column in p.group_by:
        story += _grouping(column, summary, p, styles, width)
    if summary.trend:
        story += [
            CondPageBreak(200),
            Paragraph(f"Trend by {esc(p.period)}", styles["h1"]),
            trend_table(summary.trend, p, width),
        ]
    return story


def build_pdf(
    ds: OpenedDataset,
    p: ReportParams,
    out_path: Path,
    progress: Progress,
    *,
    max_group_pages: int = MAX_GROUP_PAGES,
) -> dict[str, Any]:
    """Build the PDF at `out_path`; returns a small JSON summary for the job result."""
    styles = paragraph_styles()
    pw = A4[0] - 2 * MARGIN
    lw = landscape(A4)[0] - 2 * MARGIN

    progress.stage(1, 5, "Counting rows")
    _, lengths = queries.text_widths(ds, tick=progress.tick)
    progress.stage(5, 20, "Summary figures")
    summary = queries.summarize(ds, p, group_limit=MAX_TABLE_GROUPS, progress=progress)
    progress.stage(20, 30, "Per-group figures")
    items = queries.breakdown(ds, p, top=max_group_pages, tick=progress.tick)

    story = _cover(ds, p, summary, styles, pw) + _summary_pages(summary, p, styles, pw)
    total_groups = summary.groups[p.group_by[0]].total_groups if p.group_by else 0
    for rank, item in enumerate(items, start=1):
        story += group_page(
            item,
            summary,
            p,
            styles,
            pw,
            caption=f"Breakdown by {p.group_by[0]}, {rank} of "
            f"{len(items):,} (of {total_groups:,} groups, "
            "largest first)",
        )

    detail_limit = min(p.detail_rows, summary.rows)
    names, widths, right = detail_layout(ds, lengths, lw)
    tail: Iterator[Flowable] = iter(())
    rows_per_page = int(
        (landscape(A4)[1] - 2 * MARGIN - 8 - DETAIL_HEADER_HEIGHT) // DETAIL_ROW_HEIGHT
    )
    if detail_limit > 0 and names:
        omitted = [c for c in ds.columns if c not in names]
        story += [
            NextPageTemplate("landscape"),
            PageBreak(),
            Paragraph("Detail rows", styles["h1"]),
            Paragraph(
                f"The first {detail_limit:,} of {summary.rows:,} rows, in dataset order."
                + (f" Columns not shown for width: {esc(', '.join(omitted))}." if omitted else ""),
                styles["note"],
            ),
            Spacer(1, 6),
        ]
        tail = detail_flowables(
            ds,
            names,
            widths,
            right,
            detail_limit,
            rows_per_page,
            lambda done: advance(
                detail=done / detail_limit, message=f"Detail rows {done:,} of {detail_limit:,}"
            ),
        )

    # Layout and detail rows share one monotonic range: the story's head is laid out while
    # the first detail pages are already being fetched.
    head_count = len(story)
    counter = itertools.count(1)
    state = {"head": 0.0, "detail": 0.0}
    head_weight = 0.45 if detail_limit else 1.0
    progress.stage(30, 99, "Laying out pages")

    def advance(
        *, head: float | None = None, detail: float | None = None, message: str = ""
    ) -> None:
        if head is not None:
            state["head"] = max(state["head"], head)
        if detail is not None:
            state["detail"] = max(state["detail"], detail)
        progress.update(
            head_weight * state["head"] + (1 - head_weight) * state["detail"],
            message or f"Laying out pages ({doc.page} so far)",
        )

    def on_flowable() -> None:
        advance(head=min(1.0, next(counter) / head_count))

    doc = ReportDoc(out_path, p.title, on_flowable)
    doc.build(LazyStory(story, tail))
    return {
        "rows": summary.rows,
        "pages": doc.page,
        "groups": {c: t.total_groups for c, t in summary.groups.items()},
        "group_pages": len(items),
        "detail_rows": detail_limit if names else 0,
    }
