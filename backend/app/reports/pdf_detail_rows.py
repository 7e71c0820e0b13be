"""The PDF's detail section: raw rows drawn straight onto landscape pages.

One flowable per page, produced lazily from a DuckDB cursor while platypus lays pages out,
so only a page of rows exists in Python at a time. Drawing on the canvas is much cheaper than
a platypus Table for thousands of rows: no cell objects, no layout pass, and the fixed row
height makes the page break arithmetic exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import date, datetime
from typing import Any

from reportlab.lib import colors
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import Flowable

from app.reports import queries
from app.reports.columns import column_kind
from app.reports.datasets import OpenedDataset
from app.reports.pdf_fonts import SANS, SANS_BOLD
from app.reports.pdf_styles import ACCENT, INK, ZEBRA
from app.reports.pdf_text import clip, fmt_number

DETAIL_FONT_SIZE = 7.0
DETAIL_ROW_HEIGHT = 10.5
DETAIL_HEADER_HEIGHT = 14.0


class DetailRows(Flowable):  # type: ignore[misc]  # reportlab has no type hints
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
        c.setFont(SANS_BOLD, size)
        x = 0.0
        for text, w, right in zip(self.header, self.widths, self.right, strict=True):
            if right:
                c.drawRightString(x + w - 3, top - DETAIL_HEADER_HEIGHT + 4.5, text)
            else:
                c.drawString(x + 3, top - DETAIL_HEADER_HEIGHT + 4.5, text)
            x += w
        c.setFillColor(INK)
        c.setFont(SANS, size)
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


def detail_layout(
    ds: OpenedDataset, lengths: dict[str, int], avail: float
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
        w = max(base, stringWidth(name, SANS_BOLD, DETAIL_FONT_SIZE) + 8)
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


def detail_flowables(
    ds: OpenedDataset,
    names: list[str],
    widths: list[float],
    right: list[bool],
    limit: int,
    rows_per_page: int,
    on_rows: Callable[[int], None],
) -> Iterator[Flowable]:
    """A `DetailRows` per page for the first `limit` rows, fetched as platypus asks for them;
    `on_rows` hears how many rows are done."""
    kinds = [column_kind(ds.columns[n]) for n in names]
    clip_widths = [w - 6 for w in widths]
    sql = queries.first_rows_sql(names, limit)
    done = 0
    for chunk in ds.iter_chunks(sql, chunk_rows=rows_per_page * 8):
        for start in range(0, len(chunk), rows_per_page):
            page = [
                [
                    clip(_cell_text(v, k), cw, size=DETAIL_FONT_SIZE)
                    for v, k, cw in zip(row, kinds, clip_widths, strict=True)
                ]
                for row in chunk[start : start + rows_per_page]
            ]
            done += len(page)
            on_rows(done)
            yield DetailRows(names, page, widths, right)
