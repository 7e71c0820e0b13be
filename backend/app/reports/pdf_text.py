"""Text in the PDF report: escaping for Paragraphs, number formats, fitting a column width."""

from __future__ import annotations

import math
from typing import Any

from reportlab.pdfbase.pdfmetrics import stringWidth

from app.reports.columns import column_kind
from app.reports.locale_style import current
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
        return current().integer(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(v):
        return ""
    return current().number(v, decimals)


def decimals_of(p: ReportParams, measure: str) -> int:
    """Whole numbers for integer measures (their sums, mins and maxes), cents otherwise."""
    return 0 if column_kind(p.columns.get(measure, "DOUBLE")) == "integer" else 2


def fmt_sums(p: ReportParams, sums: list[float | None], n: int) -> list[str]:
    """The first `n` measures' sums, each with its measure's decimals."""
    return [fmt_measure(p, m, v) for m, v in zip(p.measures[:n], sums[:n], strict=False)]


def fmt_measure(p: ReportParams, measure: str, value: Any, decimals: int | None = None) -> str:
    """A measure's sum, extreme or average (`decimals` 2): money in the report's currency,
    unless the measure counts things (an integer column)."""
    counts = decimals_of(p, measure) == 0
    places = decimals_of(p, measure) if decimals is None else decimals
    if p.currency and not counts and isinstance(value, int | float) and math.isfinite(value):
        return current().money(float(value), places)
    return fmt_number(value, places)


def fmt_pct(value: float | None) -> str:
    return "" if value is None else current().percent(value)


def fmt_growth(value: float | None) -> str:
    return "" if value is None else current().percent(value, signed=True)


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
