"""Text in the PDF report: escaping for Paragraphs, number formats, fitting a column width."""

from __future__ import annotations

import math
from typing import Any

from reportlab.pdfbase.pdfmetrics import stringWidth

from app.reports.columns import column_kind
from app.reports.params import ReportParams
from app.reports.pdf_fonts import SANS


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


def decimals_of(p: ReportParams, measure: str) -> int:
    """Whole numbers for integer measures (their sums, mins and maxes), cents otherwise."""
    return 0 if column_kind(p.columns.get(measure, "DOUBLE")) == "integer" else 2


def fmt_sums(p: ReportParams, sums: list[float | None], n: int) -> list[str]:
    """The first `n` measures' sums, each with its measure's decimals."""
    return [
        fmt_number(v, decimals_of(p, m)) for m, v in zip(p.measures[:n], sums[:n], strict=False)
    ]


def fmt_pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}%"


def fmt_growth(value: float | None) -> str:
    return "" if value is None else f"{value:+.1f}%"


def clip(text: str, width: float, font: str = SANS, size: float = 8) -> str:
    """Shorten text to fit a column (ellipsis), measuring only when it might not fit (a wide
    CJK character is a whole em, so only ASCII is guessed)."""
    if text.isascii() and len(text) * size * 0.6 <= width:
        return text
    if stringWidth(text, font, size) <= width:
        return text
    while text and stringWidth(text + "…", font, size) > width:
        text = text[:-1]
    return text + "…"
