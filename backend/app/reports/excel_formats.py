"""The workbook's cell formats, sheet names, and typed writes of single values."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

import xlsxwriter
from babel.dates import get_date_format
from xlsxwriter.format import Format
from xlsxwriter.worksheet import Worksheet

from app.reports.locale_style import NumberStyle, current

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
        style = current()  # the report's locale and currency (`app.reports.locale_style`)
        date_code = "yyyy-mm-dd" if style.iso_dates else excel_date_code(style.locale)
        self.integer = wb.add_format({"num_format": "#,##0"})
        # Excel shows separators in its reader's own locale; the currency symbol and the
        # order of day, month and year are the report's.
        self.number = wb.add_format({"num_format": money_code(style)})
        self.percent = wb.add_format({"num_format": "0.0%"})
        self.date = wb.add_format({"num_format": date_code})
        self.datetime = wb.add_format({"num_format": f"{date_code} hh:mm:ss"})


def money_code(style: NumberStyle) -> str:
    """Excel's number format for measures: with the currency symbol when there is one."""
    if not style.currency:
        return "#,##0.00"
    symbol = '"' + style.currency_symbol.replace('"', "") + '"'
    between = " " if style.symbol_space else ""
    if style.symbol_first:
        return f"{symbol}{between}#,##0.00"
    return f"#,##0.00{between}{symbol}"


def excel_date_code(locale: str) -> str:
    """The locale's short date pattern (CLDR: dd.MM.yy, y/MM/dd...) as an Excel date code,
    with four-digit years: dd.mm.yyyy, yyyy/mm/dd."""
    pattern = str(get_date_format("short", locale=locale).pattern)
    pattern = re.sub(r"y+", "yyyy", pattern)
    return re.sub(r"M+", lambda m: "mm" if len(m.group(0)) >= 2 else "m", pattern)


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
