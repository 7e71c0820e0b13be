"""The PDF's page per top group: its share of the whole, its own trend and its split by the
next group_by column (or, with one grouping, its recent periods)."""

from __future__ import annotations

from typing import Any

from reportlab.lib.styles import ParagraphStyle
from reportlab.platypus import Flowable, PageBreak, Paragraph, Spacer

from app.reports import charts
from app.reports.params import ReportParams
from app.reports.pdf_fonts import SANS, SANS_BOLD
from app.reports.pdf_tables import first_and_rest, striped_table
from app.reports.pdf_text import clip, esc, fmt_pct, fmt_sums
from app.reports.summary import Breakdown, Summary
from app.reports.value_format import display, period_label

BREAKDOWN_ROWS = 15


def group_page(
    item: Breakdown,
    summary: Summary,
    p: ReportParams,
    styles: dict[str, ParagraphStyle],
    width: float,
    caption: str,
) -> list[Flowable]:
    """The flowables of one group's page, starting with its page break."""
    g0 = p.group_by[0]
    measures = p.measures
    rows = sum(r.count for r in item.by_second) or sum(r.count for r in item.trend)
    facts = [
        f"<b>{rows:,}</b> rows ({fmt_pct(100 * rows / summary.rows if summary.rows else None)}"
        " of all)"
    ]
    for j, m in enumerate(measures[:3]):
        source = item.by_second or item.trend
        total = sum((r.sums[j] or 0.0) for r in source)
        facts.append(
            f"{esc(m)} <b>{charts.fmt_short(total)}</b> ({fmt_pct(summary.share(total, j))})"
        )
    out: list[Flowable] = [
        PageBreak(),
        Paragraph(esc(caption), styles["note"]),
        Paragraph(f"{esc(g0)}: {esc(display(item.key))}", styles["h1"]),
        Paragraph(" · ".join(facts), styles["body"]),
        Spacer(1, 8),
    ]
    if item.trend:
        series = {m: [r.sums[j] for r in item.trend] for j, m in enumerate(measures[:2])}
        if not series:
            series = {"rows": [float(r.count) for r in item.trend]}
        out.append(
            charts.line_chart(
                [period_label(r.start, p.period) for r in item.trend],
                series,
                title=f"Trend by {p.period}",
                width=width,
                height=190,
                font=SANS,
                bold_font=SANS_BOLD,
            )
        )
        out.append(Spacer(1, 8))
    if item.by_second:
        g1 = p.group_by[1]
        header = [g1, "Rows", *(f"Σ {m}" for m in measures[:3]), "Share of group"]
        own_total = sum((r.sums[0] or 0.0) for r in item.by_second) if measures else rows
        data: list[list[Any]] = [header]
        for r in item.by_second[:BREAKDOWN_ROWS]:
            value = (r.sums[0] or 0.0) if measures else float(r.count)
            data.append(
                [
                    clip(display(r.key), width * 0.3 - 8),
                    f"{r.count:,}",
                    *fmt_sums(p, r.sums, 3),
                    fmt_pct(100 * value / own_total if own_total else None),
                ]
            )
        if len(item.by_second) > BREAKDOWN_ROWS:
            data.append(
                [f"… {len(item.by_second) - BREAKDOWN_ROWS} more", "", *[""] * (len(header) - 2)]
            )
        out.append(Paragraph(f"By {esc(g1)}", styles["h2"]))
        out.append(striped_table(data, first_and_rest(width, width * 0.3, len(header))))
    elif item.trend:
        recent = item.trend[-12:]
        data = [["Period", "Rows", *measures[:3]]]
        data += [
            [period_label(r.start, p.period), f"{r.count:,}", *fmt_sums(p, r.sums, 3)]
            for r in recent
        ]
        out.append(Paragraph(f"Last {len(recent)} periods", styles["h2"]))
        out.append(striped_table(data, first_and_rest(width, width * 0.25, len(data[0]))))
    return out
