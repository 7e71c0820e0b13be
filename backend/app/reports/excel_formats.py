"""The workbook's cell formats, sheet names, and typed writes of single values."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

_SHEET_NAME_BAD = re.compile(r"[\[\]:*?/\\]")


def sheet_name(text: str, taken: set[str]) -> str:
    """A valid, unique worksheet name (31 chars, none of []:*?/\\)."""
    base = _SHEET_NAME_BAD.sub("_", text).strip("'")[:31] or "Sheet"
    name, n = base, 2
    while name.lower() in taken:
        suffix = f" ({n})"
        name = base[: 31 - len(suffix)] + suffix
        n += 1
    taken.add(name.lower())
    return name


class CellFormats:
    """The workbook's cell formats, created once."""

    def __init__(self, wb: xlsxwriter.Workbook) -> None:
        self.title = wb.add_format({"bold": True, "font_size": 18, "font_color": "#1e3a8a"})
        self.subtle = wb.add_format({"italic": True, "font_color": "#6b7280"})
        self.header = wb.add_format(
            {
                "bold": True,
                "font_color": "#ffffff",
                "bg_color": "#1e3a8a",
                "border": 1,
                "border_color": "#1e3a8a",
            }
        )
        self.section = wb.add_format({"bold": True, "font_size": 12, "font_color": "#1e3a8a"})
        self.label = wb.add_format({"bold": True})
        self.integer = wb.add_format({"num_format": "#,##0"})
        self.number = wb.add_format({"num_format": "#,##0.00"})
        self.percent = wb.add_format({"num_format": "0.0%"})
        self.date = wb.add_format({"num_format": "yyyy-mm-dd"})
        self.datetime = wb.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})


def write_value(
    ws: Worksheet,
    row: int,
    col: int,
    value: Any,
    f: CellFormats,
    number_format: Format | None = None,
) -> None:
    """Typed write for the small sheets (keys can be of any column type)."""
    if value is None:
        ws.write_blank(row, col, None)
    elif isinstance(value, bool):
        ws.write_boolean(row, col, value)
    elif isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            ws.write_blank(row, col, None)
        else:
            ws.write_number(row, col, value, number_format)
    elif isinstance(value, datetime):
        ws.write_datetime(row, col, value.replace(tzinfo=None), f.datetime)
    elif hasattr(value, "isoformat") and hasattr(value, "year"):
        ws.write_datetime(row, col, value, f.date)
    else:
        ws.write_string(row, col, str(value)[:32767])
