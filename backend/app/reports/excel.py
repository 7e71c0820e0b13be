"""Excel workbooks: Summary (KPIs, native charts), one sheet per grouping, and the Data rows.

XlsxWriter lays out the small sheets, formats and charts (a "skeleton" workbook) whose Data
sheets hold only their header; `xlsx_stream.py` then streams every row into the final zip.
Data sheets split at Excel's limit of 1,048,576 rows per sheet (header included).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xlsxwriter
from xlsxwriter.utility import xl_col_to_name
from xlsxwriter.worksheet import Worksheet

from app.reports import queries
from app.reports.columns import column_kind
from app.reports.datasets import OpenedDataset
from app.reports.excel_formats import CellFormats, sheet_name
from app.reports.excel_sheets import group_sheet, summary_sheet
from app.reports.params import ReportParams
from app.reports.progress import Progress
from app.reports.summary import GroupTable
from app.reports.xlsx_stream import (
    SheetRows,
    StreamedSheet,
    rows_xml_sql,
    stream_threads,
    write_xlsx,
    xf_index,
)

EXCEL_MAX_ROWS = 1_048_576
"""Rows per worksheet in Excel, the header row included."""
MAX_GROUP_ROWS = 100_000
CHUNK_ROWS = 5_000
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@dataclass
class _DataSheet:
    name: str
    index: int
    rows: int


def _data_sheet(
    wb: xlsxwriter.Workbook,
    f: CellFormats,
    name: str,
    columns: dict[str, str],
    widths: dict[str, int],
    rows: int,
) -> Worksheet:
    """A Data sheet of the skeleton: header, column widths, frozen header, autofilter."""
    ws = wb.add_worksheet(name)
    for col, column in enumerate(columns):
        ws.write_string(0, col, column, f.header)
        kind = column_kind(columns[column])
        width = {"date": 12, "timestamp": 20, "integer": 11, "number": 13, "boolean": 8}.get(
            kind, min(60, max(10, widths.get(column, 10) + 2))
        )
        ws.set_column(col, col, max(width, min(30, len(column) + 3)))
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(rows, 1), len(columns) - 1)
    return ws


def build_excel(
    ds: OpenedDataset,
    p: ReportParams,
    out_path: Path,
    progress: Progress,
    *,
    scratch_dir: Path,
    rows_per_sheet: int = EXCEL_MAX_ROWS,
    chunk_rows: int = CHUNK_ROWS,
) -> dict[str, Any]:
    """Build the workbook at `out_path`; returns a small JSON summary for the job result."""
    if rows_per_sheet < 2:
        raise ValueError("rows_per_sheet must leave room for a header and one row")
    columns = ds.columns
    progress.stage(1, 4, "Counting rows")
    total_rows, widths = queries.text_widths(ds, tick=progress.tick)

    progress.stage(4, 12, "Summary figures")
    summary = queries.summarize(
        ds, p, group_limit=min(MAX_GROUP_ROWS, rows_per_sheet - 3), progress=progress
    )

    progress.stage(12, 14, "Laying out the workbook")
    per_sheet = rows_per_sheet - 1
    skeleton_path = scratch_dir / f"{out_path.stem}.skeleton.xlsx"
    wb = xlsxwriter.Workbook(
        str(skeleton_path),
        {
            "constant_memory": True,
            "strings_to_numbers": False,
            "strings_to_formulas": False,
            "strings_to_urls": False,
        },
    )
    f = CellFormats(wb)
    taken: set[str] = set()
    summary_ws = wb.add_worksheet(sheet_name("Summary", taken))
    group_sheets: dict[str, tuple[str, GroupTable]] = {}
    group_ws: list[tuple[Worksheet, GroupTable]] = []
    for column in p.group_by:
        ws = wb.add_worksheet(sheet_name(f"By {column}", taken))
        group_sheets[column] = (ws.name, summary.groups[column])
        group_ws.append((ws, summary.groups[column]))
    data_sheets: list[_DataSheet] = []
    for k in range(max(1, math.ceil(total_rows / per_sheet))):
        rows_here = min(per_sheet, total_rows - k * per_sheet) if total_rows else 0
        name = sheet_name("Data" if k == 0 else f"Data ({k + 1})", taken)
        ws = _data_sheet(wb, f, name, columns, widths, rows_here)
        data_sheets.append(_DataSheet(ws.name, ws.index, rows_here))
    summary_sheet(wb, summary_ws, f, p, summary, ds.description, group_sheets)
    for ws, table in group_ws:
        group_sheet(wb, ws, f, p, summary, table)
    date_xf, datetime_xf = xf_index(f.date), xf_index(f.datetime)
    wb.close()

    progress.stage(14, 99, "Writing data rows")
    sql = rows_xml_sql(
        columns, rows_per_sheet=rows_per_sheet, date_xf=date_xf, datetime_xf=datetime_xf
    )
    last_col = xl_col_to_name(max(len(columns) - 1, 0))
    # One DuckDB thread fewer than cores: the deflate thread needs the other, and each extra
    # DuckDB thread holds its own buffers (about 20 MB of peak RSS on the 2-core benchmark).
    ds.con.execute(f"SET threads = {stream_threads()}")
    chunks = ds.iter_chunks(sql, chunk_rows=chunk_rows) if total_rows else iter(())
    rows = SheetRows(
        chunks,
        lambda done: progress.update(
            done / max(total_rows, 1), f"Data rows {done:,} of {total_rows:,}"
        ),
    )
    streamed = {
        f"xl/worksheets/sheet{s.index + 1}.xml": StreamedSheet(
            rows.take(s.rows),
            last_ref=f"{last_col}{s.rows + 1}",
            cells=s.rows * max(len(columns), 1),
        )
        for s in data_sheets
    }
    try:
        write_xlsx(skeleton_path, out_path, streamed)
    finally:
        _close = getattr(chunks, "close", None)
        if callable(_close):
            _close()
        skeleton_path.unlink(missing_ok=True)
    return {
        "rows": total_rows,
        "sheets": [
            summary_ws.name,
            *(ws.name for ws, _ in group_ws),
            *(s.name for s in data_sheets),
        ],
        "data_sheets": len(data_sheets),
        "groups": {c: t.total_groups for c, t in summary.groups.items()},
    }
