"""The look of the PDF report: colours, margins and paragraph styles, in one place.

Every style names the embedded Unicode fonts of `pdf_fonts` (never a base-14 font).
"""

from __future__ import annotations

from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm

from app.reports.pdf_fonts import register

INK = colors.HexColor("#1f2937")
ACCENT = colors.HexColor("#1e3a8a")
MUTED = colors.HexColor("#6b7280")
ZEBRA = colors.HexColor("#f3f4f6")
LINE = colors.HexColor("#d1d5db")
MARGIN = 16 * mm


def paragraph_styles() -> dict[str, ParagraphStyle]:
    """The named paragraph styles: cover_title, cover_sub, h1, h2, body, note, kpi_*."""
    sans, bold = register()
    base = getSampleStyleSheet()
    return {
        "cover_title": ParagraphStyle(
            "cover_title",
            parent=base["Title"],
            fontName=bold,
            # DejaVu Sans runs about a sixth wider than Helvetica: 26 pt sets a title on
            # as many lines as Helvetica's 30 did.
            fontSize=26,
            leading=32,
            textColor=ACCENT,
            alignment=TA_LEFT,
        ),
        "cover_sub": ParagraphStyle(
            "cover_sub",
            parent=base["Normal"],
            fontName=sans,
            fontSize=12,
            leading=16,
            textColor=MUTED,
        ),
        "h1": ParagraphStyle(
            "h1",
            parent=base["Heading1"],
            fontName=bold,
            fontSize=18,
            leading=22,
            textColor=ACCENT,
            spaceBefore=0,
            spaceAfter=8,
        ),
        "h2": ParagraphStyle(
            "h2",
            parent=base["Heading2"],
            fontName=bold,
            fontSize=13,
            leading=16,
            textColor=ACCENT,
            spaceBefore=10,
            spaceAfter=6,
        ),
        "body": ParagraphStyle(
            "body", parent=base["Normal"], fontName=sans, fontSize=9.5, leading=13, textColor=INK
        ),
        "note": ParagraphStyle(
            "note", parent=base["Normal"], fontName=sans, fontSize=8, leading=10, textColor=MUTED
        ),
        "kpi_label": ParagraphStyle(
            "kpi_label",
            parent=base["Normal"],
            fontName=sans,
            fontSize=8,
            leading=10,
            textColor=MUTED,
        ),
        "kpi_value": ParagraphStyle(
            "kpi_value",
            parent=base["Normal"],
            fontSize=16,
            leading=20,
            textColor=INK,
            fontName=bold,
        ),
    }
