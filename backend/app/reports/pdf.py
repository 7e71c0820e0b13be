"""PDF reports with ReportLab: cover, KPI summary, vector charts, grouped tables, a page per
top group, and a paginated detail section.

Charts are ReportLab drawings embedded as vector paths (no matplotlib PNGs). The detail
section is drawn straight onto the canvas, one flowable per page, and produced lazily from a
DuckDB cursor while platypus lays pages out: only a page of rows exists in Python at a time.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import (
    BaseDocTemplate,
    CondPageBreak,
    Flowable,
    Frame,
    KeepTogether,
    NextPageTemplate,
    PageBreak,
    PageTemplate,
    Paragraph,
    Spacer,
    Table,
    TableStyle,
)

from app.reports import charts
from app.reports.analysis import (
    Breakdown,
    GroupTable,
    Summary,
    TrendRow,
    breakdown,
    display,
    period_label,
    summarize,
)
from app.reports.datasets import Dataset, column_kind, quote_ident
from app.reports.spec import Progress, ReportParams

PDF_MIME = "application/pdf"
MAX_TABLE_GROUPS = 500
MAX_GROUP_PAGES = 200
BREAKDOWN_ROWS = 15
DETAIL_FONT_SIZE = 7.0
DETAIL_ROW_HEIGHT = 10.5
DETAIL_HEADER_HEIGHT = 14.0

INK = colors.HexColor("#1f2937")
ACCENT = colors.HexColor("#1e3a8a")
MUTED = colors.HexColor("#6b7280")
ZEBRA = colors.HexColor("#f3f4f6")
LINE = colors.HexColor("#d1d5db")
MARGIN = 16 * mm


def _styles() -> dict[str, ParagraphStyle]:
    base = getSampleStyleSheet()
    return {
        "cover_title": ParagraphStyle(
            "cover_title",
            parent=base["Title"],
            fontSize=30,
            leading=36,
            textColor=ACCENT,
            alignment=TA_LEFT,
        ),
        "cover_sub": ParagraphStyle(
            "cover_sub", parent=base["Normal"], fontSize=12, leading=16, textColor=MUTED
        ),
        "h1": ParagraphStyle(
            "h1",
            parent=base["Heading1"],
            fontSize=18,
            leading=22,
            textColor=ACCENT,
            spaceBefore=0,
            spaceAfter=8,
        ),
        "h2": ParagraphStyle(
            "h2",
            parent=base["Heading2"],
            fontSize=13,
            leading=16,
            textColor=ACCENT,
            spaceBefore=10,
            spaceAfter=6,
        ),
        "body": ParagraphStyle(
            "body", parent=base["Normal"], fontSize=9.5, leading=13, textColor=INK
        ),
        "note": ParagraphStyle(
            "note", parent=base["Normal"], fontSize=8, leading=10, textColor=MUTED
        ),
        "kpi_label": ParagraphStyle(
            "kpi_label", parent=base["Normal"], fontSize=8, leading=10, textColor=MUTED
        ),
        "kpi_value": ParagraphStyle(
            "kpi_value",
            parent=base["Normal"],
            fontSize=16,
            leading=20,
            textColor=INK,
            fontName="Helvetica-Bold",
        ),
    }


def esc(text: Any) -> str:
    """Text for a Paragraph (which parses a little XML)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fmt_number(value: Any, decimals: int = 2) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return ""
    return f"{v:,.{decimals}f}"


def _decimals(p: ReportParams, measure: str) -> int:
    """Whole numbers for integer measures (their sums, mins and maxes), cents otherwise."""
    return 0 if column_kind(p.columns.get(measure, "DOUBLE")) == "integer" else 2


def _sums(p: ReportParams, sums: list[float | None], n: int) -> list[str]:
    return [fmt_number(v, _decimals(p, m)) for m, v in zip(p.measures[:n], sums[:n], strict=False)]


def fmt_pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}%"


def fmt_growth(value: float | None) -> str:
    return "" if value is None else f"{value:+.1f}%"


# ----------------------------------------------------------------------------- doc template


class _ReportDoc(BaseDocTemplate):
    """Three page templates (cover, portrait, landscape detail) and a per-flowable hook that
    drives progress (and with it, cancellation)."""

    def __init__(self, path: Path, title: str, on_flowable: Callable[[], None]) -> None:
        super().__init__(
            str(path),
            pagesize=A4,
            title=title,
            author="Report job service",
            leftMargin=MARGIN,
            rightMargin=MARGIN,
            topMargin=MARGIN + 4,
            bottomMargin=MARGIN + 4,
        )
        self._on_flowable = on_flowable
        self.report_title = title
        pw, ph = A4
        lw, lh = landscape(A4)
        portrait = Frame(
            MARGIN,
            MARGIN + 4,
            pw - 2 * MARGIN,
            ph - 2 * MARGIN - 8,
            id="p",
            leftPadding=0,
            rightPadding=0,
            topPadding=0,
            bottomPadding=0,
        )
        wide = Frame(
            MARGIN,
            MARGIN + 4,
            lw - 2 * MARGIN,
            lh - 2 * MARGIN - 8,
            id="l",
            leftPadding=0,
            rightPadding=0,
            topPadding=0,
            bottomPadding=0,
        )
        cover = Frame(
            MARGIN + 10 * mm,
            MARGIN,
            pw - 2 * MARGIN - 20 * mm,
            ph * 0.62,
            id="c",
            leftPadding=0,
            rightPadding=0,
            topPadding=0,
            bottomPadding=0,
        )
        self.addPageTemplates(
            [
                PageTemplate(id="cover", frames=[cover], onPage=self._cover_page, pagesize=A4),
                PageTemplate(id="portrait", frames=[portrait], onPage=self._page, pagesize=A4),
                PageTemplate(
                    id="landscape", frames=[wide], onPage=self._page, pagesize=landscape(A4)
                ),
            ]
        )

    def afterFlowable(self, flowable: Flowable) -> None:
        self._on_flowable()

    def _cover_page(self, canvas: Any, doc: Any) -> None:
        pw, ph = A4
        canvas.saveState()
        canvas.setFillColor(ACCENT)
        canvas.rect(0, ph - 70 * mm, pw, 70 * mm, stroke=0, fill=1)
        canvas.setFillColor(colors.HexColor("#3b82f6"))
        canvas.rect(0, ph - 74 * mm, pw, 4 * mm, stroke=0, fill=1)
        canvas.setFillColor(colors.white)
        canvas.setFont("Helvetica-Bold", 11)
        canvas.drawString(MARGIN + 10 * mm, ph - 30 * mm, "REPORT")
        canvas.setFont("Helvetica", 9)
        canvas.setFillColor(MUTED)
        canvas.drawRightString(pw - MARGIN, MARGIN - 4, f"Page {canvas.getPageNumber()}")
        canvas.restoreState()

    def _page(self, canvas: Any, doc: Any) -> None:
        width, height = canvas._pagesize
        canvas.saveState()
        canvas.setStrokeColor(LINE)
        canvas.setLineWidth(0.5)
        canvas.line(MARGIN, height - MARGIN + 2, width - MARGIN, height - MARGIN + 2)
        canvas.line(MARGIN, MARGIN - 2, width - MARGIN, MARGIN - 2)
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(MUTED)
        canvas.drawString(MARGIN, height - MARGIN + 6, self.report_title[:110])
        canvas.drawRightString(width - MARGIN, MARGIN - 11, f"Page {canvas.getPageNumber()}")
        canvas.restoreState()


class _LazyStory(list[Flowable]):
    """A story that pulls flowables from an iterator as platypus consumes it.

    `BaseDocTemplate.build` checks `len(story)` before taking each flowable, so topping the
    buffer up there keeps only a few pages of detail rows alive instead of all of them.
    """

    def __init__(self, head: Iterable[Flowable], tail: Iterator[Flowable]) -> None:
        super().__init__(head)
        self._tail: Iterator[Flowable] | None = tail

    def __len__(self) -> int:
        if self._tail is not None and super().__len__() < 4:
            more = list(itertools.islice(self._tail, 4))
            if more:
                self.extend(more)
            else:
                self._tail = None
        return super().__len__()


# ----------------------------------------------------------------------------- tables


def _table(
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
        ("FONT", (0, 0), (-1, -1), "Helvetica", font_size),
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", font_size),
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


def _clip(text: str, width: float, font: str = "Helvetica", size: float = 8) -> str:
    """Shorten text to fit a column (ellipsis), measuring only when it might not fit."""
    if len(text) * size * 0.6 <= width:
        return text
    while text and stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text + "…"


def _kpi_cards(
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
    table = Table(
        [[Table([[c[0]], [c[1]]], colWidths=[col_w - 14]) for c in row] for row in grid],
        colWidths=[col_w] * per_row,
    )
    table.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, -1), ZEBRA),
                ("BOX", (0, 0), (-1, -1), 0.5, colors.white),
                ("INNERGRID", (0, 0), (-1, -1), 4, colors.white),
                ("TOPPADDING", (0, 0), (-1, -1), 6),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 6),
            ]
        )
    )
    return table


def _totals_table(summary: Summary, p: ReportParams, width: float) -> Table:
    data: list[list[Any]] = [["Measure", "Total", "Average", "Min", "Max"]]
    for m in p.measures:
        t = summary.totals[m]
        d = _decimals(p, m)
        data.append(
            [m, fmt_number(t.sum, d), fmt_number(t.avg), fmt_number(t.min, d), fmt_number(t.max, d)]
        )
    first = width * 0.28
    return _table(data, [first] + [(width - first) / 4] * 4)


def _trend_table(rows: list[TrendRow], p: ReportParams, width: float) -> Table:
    measures = p.measures[:3]
    header = ["Period", "Rows", *measures]
    if measures:
        header += [f"{measures[0]} vs prev.", "vs last year"]
    data: list[list[Any]] = [header]
    by_start = {r.start: r for r in rows}
    previous: TrendRow | None = None
    for r in rows:
        line = [period_label(r.start, p.period), f"{r.count:,}", *_sums(p, r.sums, len(measures))]
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
    first = width * 0.16
    return _table(data, [first] + [(width - first) / (len(header) - 1)] * (len(header) - 1))


def _group_table(table: GroupTable, summary: Summary, p: ReportParams, width: float) -> Table:
    measures = p.measures[:3]
    header = [table.column, "Rows", *(f"Σ {m}" for m in measures)]
    if measures:
        header.append(f"avg {measures[0]}")
    header.append("Share")
    data: list[list[Any]] = [header]
    first = width * 0.3
    for r in table.rows[:MAX_TABLE_GROUPS]:
        line = [_clip(display(r.key), first - 8), f"{r.count:,}", *_sums(p, r.sums, len(measures))]
        if measures:
            line.append(fmt_number(r.avgs[0]))
        line.append(fmt_pct(summary.share(r.sums[0] if p.measures else float(r.count))))
        data.append(line)
    return _table(data, [first] + [(width - first) / (len(header) - 1)] * (len(header) - 1))


# ----------------------------------------------------------------------------- detail rows


class DetailRows(Flowable):
    """One page (or the rest of a page) of raw rows, drawn directly on the canvas.

    Much cheaper than a platypus Table for thousands of rows: no cell objects, no layout pass;
    fixed row height makes the page break arithmetic exact.
    """

    def __init__(
        self, header: list[str], rows: list[list[str]], widths: list[float], right: list[bool]
    ) -> None:
        super().__init__()
        self.header, self.rows, self.widths, self.right = header, rows, widths, right

    def wrap(self, avail_width: float, avail_height: float) -> tuple[float, float]:
        self.width = sum(self.widths)
        self.height = DETAIL_HEADER_HEIGHT + DETAIL_ROW_HEIGHT * len(self.rows)
        return self.width, self.height

    def split(self, avail_width: float, avail_height: float) -> list[Flowable]:
        fit = int((avail_height - DETAIL_HEADER_HEIGHT) // DETAIL_ROW_HEIGHT)
        if fit < 3 or fit >= len(self.rows):
            return []
        return [
            DetailRows(self.header, self.rows[:fit], self.widths, self.right),
            DetailRows(self.header, self.rows[fit:], self.widths, self.right),
        ]

    def draw(self) -> None:
        c = self.canv
        width, size = sum(self.widths), DETAIL_FONT_SIZE
        top = self.height
        c.setFillColor(ACCENT)
        c.rect(0, top - DETAIL_HEADER_HEIGHT, width, DETAIL_HEADER_HEIGHT, stroke=0, fill=1)
        c.setFillColor(ZEBRA)
        y = top - DETAIL_HEADER_HEIGHT
        for i in range(1, len(self.rows), 2):
            c.rect(0, y - (i + 1) * DETAIL_ROW_HEIGHT, width, DETAIL_ROW_HEIGHT, stroke=0, fill=1)
        c.setFillColor(colors.white)
        c.setFont("Helvetica-Bold", size)
        x = 0.0
        for text, w, right in zip(self.header, self.widths, self.right, strict=True):
            if right:
                c.drawRightString(x + w - 3, top - DETAIL_HEADER_HEIGHT + 4.5, text)
            else:
                c.drawString(x + 3, top - DETAIL_HEADER_HEIGHT + 4.5, text)
            x += w
        c.setFillColor(INK)
        c.setFont("Helvetica", size)
        y = top - DETAIL_HEADER_HEIGHT - DETAIL_ROW_HEIGHT + 3.2
        for row in self.rows:
            x = 0.0
            for text, w, right in zip(row, self.widths, self.right, strict=True):
                if right:
                    c.drawRightString(x + w - 3, y, text)
                else:
                    c.drawString(x + 3, y, text)
                x += w
            y -= DETAIL_ROW_HEIGHT


def _detail_layout(
    ds: Dataset, lengths: dict[str, int], avail: float
) -> tuple[list[str], list[float], list[bool]]:
    """Which columns fit across a landscape page, and how wide each is."""
    names, widths, right = [], [], []
    used = 0.0
    for name, duck_type in ds.columns.items():
        kind = column_kind(duck_type)
        base = {
            "date": 50.0,
            "timestamp": 82.0,
            "integer": 48.0,
            "number": 62.0,
            "boolean": 34.0,
        }.get(kind)
        if base is None:
            base = min(170.0, max(40.0, lengths.get(name, 10) * DETAIL_FONT_SIZE * 0.55 + 8))
        w = max(base, stringWidth(name, "Helvetica-Bold", DETAIL_FONT_SIZE) + 8)
        if used + w > avail:
            break
        names.append(name)
        widths.append(w)
        right.append(kind in {"integer", "number"})
        used += w
    if names and used < avail:  # spread the slack so the table spans the page
        extra = (avail - used) / len(names)
        widths = [w + extra for w in widths]
    return names, widths, right


def _cell_text(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "integer":
        return f"{value:,}"
    if kind == "number":
        return fmt_number(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _detail_flowables(
    ds: Dataset,
    names: list[str],
    widths: list[float],
    right: list[bool],
    limit: int,
    rows_per_page: int,
    on_rows: Callable[[int], None],
) -> Iterator[Flowable]:
    kinds = [column_kind(ds.columns[n]) for n in names]
    clip = [w - 6 for w in widths]
    sql = f"SELECT {', '.join(quote_ident(n) for n in names)} FROM data LIMIT {int(limit)}"
    done = 0
    for chunk in ds.iter_chunks(sql, chunk_rows=rows_per_page * 8):
        for start in range(0, len(chunk), rows_per_page):
            page = [
                [
                    _clip(_cell_text(v, k), cw, size=DETAIL_FONT_SIZE)
                    for v, k, cw in zip(row, kinds, clip, strict=True)
                ]
                for row in chunk[start : start + rows_per_page]
            ]
            done += len(page)
            on_rows(done)
            yield DetailRows(names, page, widths, right)


# ----------------------------------------------------------------------------- the report


def _breakdown_page(
    item: Breakdown,
    summary: Summary,
    p: ReportParams,
    styles: dict[str, ParagraphStyle],
    width: float,
    caption: str,
) -> list[Flowable]:
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
                    _clip(display(r.key), width * 0.3 - 8),
                    f"{r.count:,}",
                    *_sums(p, r.sums, 3),
                    fmt_pct(100 * value / own_total if own_total else None),
                ]
            )
        if len(item.by_second) > BREAKDOWN_ROWS:
            data.append(
                [f"… {len(item.by_second) - BREAKDOWN_ROWS} more", "", *[""] * (len(header) - 2)]
            )
        first = width * 0.3
        out.append(Paragraph(f"By {esc(g1)}", styles["h2"]))
        out.append(
            _table(data, [first] + [(width - first) / (len(header) - 1)] * (len(header) - 1))
        )
    elif item.trend:
        recent = item.trend[-12:]
        data = [["Period", "Rows", *measures[:3]]]
        data += [
            [period_label(r.start, p.period), f"{r.count:,}", *_sums(p, r.sums, 3)] for r in recent
        ]
        first = width * 0.25
        out.append(Paragraph(f"Last {len(recent)} periods", styles["h2"]))
        out.append(
            _table(data, [first] + [(width - first) / (len(data[0]) - 1)] * (len(data[0]) - 1))
        )
    return out


def build_pdf(
    ds: Dataset,
    p: ReportParams,
    out_path: Path,
    progress: Progress,
    *,
    max_group_pages: int = MAX_GROUP_PAGES,
) -> dict[str, Any]:
    """Build the PDF at `out_path`; returns a small JSON summary for the job result."""
    styles = _styles()
    pw = A4[0] - 2 * MARGIN
    lw = landscape(A4)[0] - 2 * MARGIN

    progress.stage(1, 5, "Counting rows")
    texts = [c for c, t in ds.columns.items() if column_kind(t) in {"string", "other"}]
    exprs = ["count(*)"] + [f"max(length(CAST({quote_ident(c)} AS VARCHAR)))" for c in texts]
    first = ds.query(f"SELECT {', '.join(exprs)} FROM data", tick=progress.tick)[0]
    lengths = {c: int(v or 8) for c, v in zip(texts, first[1:], strict=True)}

    progress.stage(5, 20, "Summary figures")
    summary = summarize(ds, p, group_limit=MAX_TABLE_GROUPS, progress=progress)
    progress.stage(20, 30, "Per-group figures")
    items = breakdown(ds, p, top=max_group_pages, tick=progress.tick)

    story: list[Flowable] = []
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    story += [
        Paragraph(esc(p.title), styles["cover_title"]),
        Spacer(1, 8),
        Paragraph(esc(ds.description), styles["cover_sub"]),
        Spacer(1, 22),
    ]
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
        colWidths=[32 * mm, pw - 62 * mm],
    )
    meta_table.setStyle(
        TableStyle(
            [
                ("LINEBELOW", (0, 0), (-1, -1), 0.4, LINE),
                ("TOPPADDING", (0, 0), (-1, -1), 4),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 4),
            ]
        )
    )
    story += [meta_table, NextPageTemplate("portrait"), PageBreak()]

    story += [Paragraph("Summary", styles["h1"]), _kpi_cards(summary, p, styles, pw), Spacer(1, 10)]
    if p.measures:
        story += [_totals_table(summary, p, pw), Spacer(1, 12)]
    if summary.trend:
        labels = [period_label(r.start, p.period) for r in summary.trend]
        series = {m: [r.sums[j] for r in summary.trend] for j, m in enumerate(p.measures[:2])}
        story.append(
            charts.line_chart(
                labels,
                series or {"rows": [float(r.count) for r in summary.trend]},
                title=f"Trend by {p.period}",
                width=pw,
                height=210,
            )
        )
    for column in p.group_by:
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
                    width=pw,
                    height=max(120, 40 + 15 * len(top)),
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
                    width=pw,
                    height=170,
                ),
            ]
        story.append(KeepTogether(block))
        story.append(Spacer(1, 8))
        note = f"{table.total_groups:,} groups" + (
            f"; the {min(len(table.rows), MAX_TABLE_GROUPS):,} largest are listed"
            if table.total_groups > MAX_TABLE_GROUPS
            else ""
        )
        story += [
            Paragraph(note, styles["note"]),
            Spacer(1, 4),
            _group_table(table, summary, p, pw),
        ]
    if summary.trend:
        story += [
            CondPageBreak(200),
            Paragraph(f"Trend by {esc(p.period)}", styles["h1"]),
            _trend_table(summary.trend, p, pw),
        ]

    total_groups = summary.groups[p.group_by[0]].total_groups if p.group_by else 0
    for rank, item in enumerate(items, start=1):
        story += _breakdown_page(
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
    names, widths, right = _detail_layout(ds, lengths, lw)
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
        tail = _detail_flowables(
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

    doc = _ReportDoc(out_path, p.title, on_flowable)
    doc.build(_LazyStory(story, tail))
    return {
        "rows": summary.rows,
        "pages": doc.page,
        "groups": {c: t.total_groups for c, t in summary.groups.items()},
        "group_pages": len(items),
        "detail_rows": detail_limit if names else 0,
    }
