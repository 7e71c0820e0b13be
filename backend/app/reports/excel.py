"""Excel workbooks: Summary (KPIs, native charts), one sheet per grouping, and the Data rows.

XlsxWriter lays out the small sheets, formats and charts (a "skeleton" workbook). The Data
sheets, which hold every row, are then streamed into the final zip: DuckDB renders each row's
`<row>` XML in its own threads, and a second thread deflates while the next chunk is produced.
Measured on 1M rows x 10 columns this is several times faster than XlsxWriter's cell-by-cell
Python loop (see bench/README.md), memory stays flat, and unlike `Workbook.close()` in
constant_memory mode (tens of seconds compressing with no way to report or stop) every chunk
reports progress and is a cancellation point.

Data sheets split at Excel's limit of 1,048,576 rows per sheet (header included).
"""

from __future__ import annotations

import math
import os
import queue
import re
import threading
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import xlsxwriter
from xlsxwriter.format import Format
from xlsxwriter.utility import xl_col_to_name
from xlsxwriter.worksheet import Worksheet

from app.reports.analysis import GroupTable, Summary, display, period_label, summarize
from app.reports.datasets import Dataset, column_kind, quote_ident
from app.reports.spec import Progress, ReportParams

EXCEL_MAX_ROWS = 1_048_576
"""Rows per worksheet in Excel, the header row included."""
MAX_GROUP_ROWS = 100_000
CHUNK_ROWS = 5_000
DATA_COMPRESSLEVEL = 1
"""zlib level for the Data sheets: level 1 is ~2x faster than XlsxWriter's default (6) for a
file ~25% larger; Data sheets dominate both time and size."""
CHART_TOP = 10
PIE_SLICES = 8
XLSX_MIME = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

_SHEET_NAME_BAD = re.compile(r"[\[\]:*?/\\]")
_CONTROL_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F]"
_ROW_ALIAS = '"__xlsx_row__"'


@dataclass
class _DataSheet:
    name: str
    index: int
    rows: int


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


class _Formats:
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


# ----------------------------------------------------------------------------- small sheets


def _write_value(
    ws: Worksheet, row: int, col: int, value: Any, f: _Formats, number_format: Format | None = None
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


def _summary_sheet(
    wb: xlsxwriter.Workbook,
    ws: Worksheet,
    f: _Formats,
    p: ReportParams,
    summary: Summary,
    description: str,
    group_sheets: dict[str, tuple[str, GroupTable]],
) -> None:
    measures = p.measures
    ws.set_column(0, 0, 24)
    ws.set_column(1, 5 + len(measures), 15)
    ws.write_string(0, 0, p.title, f.title)
    ws.write_string(1, 0, description, f.subtle)
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    ws.write_string(2, 0, f"Generated {generated} · filters: {p.filters_text()}", f.subtle)

    row = 4
    ws.write_string(row, 0, "Key figures", f.section)
    row += 1
    for col, text in enumerate(["Measure", "Total", "Average", "Min", "Max"]):
        ws.write_string(row, col, text, f.header)
    row += 1
    ws.write_string(row, 0, "Rows", f.label)
    ws.write_number(row, 1, summary.rows, f.integer)
    row += 1
    for name in measures:
        t = summary.totals[name]
        ws.write_string(row, 0, name, f.label)
        for col, value in enumerate([t.sum, t.avg, t.min, t.max], start=1):
            _write_value(ws, row, col, value, f, f.number)
        row += 1
    if p.date_column:
        ws.write_string(row, 0, f"{p.date_column} range", f.label)
        _write_value(ws, row, 1, summary.date_min, f)
        _write_value(ws, row, 2, summary.date_max, f)
        row += 1

    charts: list[Any] = []
    # Shares of the last grouping: the top slices plus "Other", so the pie adds up to 100%.
    if p.group_by:
        column = p.group_by[-1]
        table = summary.groups[column]
        metric = measures[0] if measures else "rows"
        values = [(r.sums[0] if measures else r.count) or 0.0 for r in table.rows]
        total = (summary.totals[measures[0]].sum if measures else summary.rows) or 0.0
        head = list(zip(table.rows, values, strict=True))[: PIE_SLICES - 1]
        rest = total - sum(v for _, v in head)
        row += 1
        ws.write_string(row, 0, f"Share of {metric} by {column}", f.section)
        row += 1
        for col, text in enumerate([column, metric, "Share"]):
            ws.write_string(row, col, text, f.header)
        first = row + 1
        for r, value in head:
            row += 1
            ws.write_string(row, 0, display(r.key)[:255])
            ws.write_number(row, 1, value, f.number)
            ws.write_number(row, 2, value / total if total else 0, f.percent)
        if len(table.rows) > len(head) and abs(rest) > 1e-9:
            row += 1
            ws.write_string(row, 0, "Other")
            ws.write_number(row, 1, rest, f.number)
            ws.write_number(row, 2, rest / total if total else 0, f.percent)
        if row >= first:
            pie = wb.add_chart({"type": "pie"})
            pie.add_series(
                {
                    "name": f"{metric} by {column}",
                    "categories": [ws.name, first, 0, row, 0],
                    "values": [ws.name, first, 1, row, 1],
                    "data_labels": {"percentage": True},
                }
            )
            pie.set_title({"name": f"Share of {metric} by {column}"})
            charts.append(pie)

    if p.group_by:
        column = p.group_by[0]
        name, table = group_sheets[column]
        n = min(CHART_TOP, len(table.rows))
        if n:
            bar = wb.add_chart({"type": "bar"})
            value_col = 2 if measures else 1
            bar.add_series(
                {
                    "name": f"{measures[0] if measures else 'rows'}",
                    "categories": [name, 1, 0, n, 0],
                    "values": [name, 1, value_col, n, value_col],
                    "fill": {"color": "#2563eb"},
                }
            )
            metric = measures[0] if measures else "rows"
            bar.set_title({"name": f"{metric.capitalize()} by {column}: top {n}"})
            bar.set_y_axis({"reverse": True})
            bar.set_legend({"none": True})
            charts.insert(0, bar)

    if p.date_column and summary.trend:
        row += 2
        ws.write_string(row, 0, f"Trend by {p.period}", f.section)
        row += 1
        headers = ["Period", "Start", "Rows", *measures]
        if measures:
            headers.append(f"{measures[0]} growth")
        for col, text in enumerate(headers):
            ws.write_string(row, col, text, f.header)
        first = row + 1
        previous: float | None = None
        for point in summary.trend:
            row += 1
            ws.write_string(row, 0, period_label(point.start, p.period))
            ws.write_datetime(row, 1, point.start, f.date)
            ws.write_number(row, 2, point.count, f.integer)
            for j, value in enumerate(point.sums):
                _write_value(ws, row, 3 + j, value, f, f.number)
            if measures:
                current = point.sums[0]
                if previous and current is not None:
                    ws.write_number(
                        row, 3 + len(measures), (current - previous) / abs(previous), f.percent
                    )
                previous = current
        line = wb.add_chart({"type": "line"})
        metric_col = 3 if measures else 2
        line.add_series(
            {
                "name": measures[0] if measures else "rows",
                "categories": [ws.name, first, 0, row, 0],
                "values": [ws.name, first, metric_col, row, metric_col],
                "line": {"color": "#2563eb", "width": 2},
            }
        )
        if len(measures) > 1:
            line.add_series(
                {
                    "name": measures[1],
                    "categories": [ws.name, first, 0, row, 0],
                    "values": [ws.name, first, 4, row, 4],
                    "line": {"color": "#f59e0b", "width": 2},
                    "y2_axis": True,
                }
            )
        line.set_title({"name": f"Trend by {p.period}"})
        line.set_legend({"position": "bottom"})
        charts.insert(0, line)

    for i, chart in enumerate(charts):
        chart.set_size({"width": 620, "height": 300})
        ws.insert_chart(4 + 16 * i, 7 + len(measures), chart)


def _group_sheet(
    wb: xlsxwriter.Workbook,
    ws: Worksheet,
    f: _Formats,
    p: ReportParams,
    summary: Summary,
    table: GroupTable,
) -> None:
    measures = p.measures
    headers = [table.column, "Rows"]
    for m in measures:
        headers += [f"Sum of {m}", f"Average {m}"]
    headers.append(f"Share of {measures[0] if measures else 'rows'}")
    ws.set_column(0, 0, 28)
    ws.set_column(1, len(headers) - 1, 16)
    for col, text in enumerate(headers):
        ws.write_string(0, col, text, f.header)
    for i, r in enumerate(table.rows, start=1):
        _write_value(ws, i, 0, r.key, f)
        ws.write_number(i, 1, r.count, f.integer)
        for j in range(len(measures)):
            _write_value(ws, i, 2 + 2 * j, r.sums[j], f, f.number)
            _write_value(ws, i, 3 + 2 * j, r.avgs[j], f, f.number)
        share = summary.share(r.sums[0] if measures else float(r.count))
        _write_value(ws, i, len(headers) - 1, None if share is None else share / 100, f, f.percent)
    last = len(table.rows)
    ws.freeze_panes(1, 0)
    ws.autofilter(0, 0, max(last, 1), len(headers) - 1)
    if last < table.total_groups:
        ws.write_string(
            last + 2, 0, f"Top {last:,} of {table.total_groups:,} groups shown.", f.subtle
        )
    n = min(15, last)
    if n:
        chart = wb.add_chart({"type": "column"})
        value_col = 2 if measures else 1
        chart.add_series(
            {
                "name": headers[value_col],
                "categories": [ws.name, 1, 0, n, 0],
                "values": [ws.name, 1, value_col, n, value_col],
                "fill": {"color": "#2563eb"},
            }
        )
        chart.set_title({"name": f"{headers[value_col]} by {table.column}: top {n}"})
        chart.set_legend({"none": True})
        chart.set_size({"width": 620, "height": 300})
        ws.insert_chart(1, len(headers) + 1, chart)


# ----------------------------------------------------------------------------- data rows


def _xf_index(fmt: Format) -> int:
    """The style index Excel will see for `fmt`. XlsxWriter assigns it on first use of a
    format; our streamed cells use the format without going through XlsxWriter, so ask for it
    (this is the call XlsxWriter itself makes when it writes a cell)."""
    return int(fmt._get_xf_index())


def _cell_sql(name: str, duck_type: str, letter: str, date_xf: int, datetime_xf: int) -> str:
    """SQL rendering one cell's XML ('' for NULL, so the cell is simply absent)."""
    col = quote_ident(name)
    ref = f"'<c r=\"{letter}' || {_ROW_ALIAS} || '\""
    kind = column_kind(duck_type)

    def text(expr: str) -> str:
        clean = (
            f"regexp_replace(CASE WHEN strlen({expr}) > 32767 THEN left({expr}, 32767) "
            f"ELSE {expr} END, '{_CONTROL_CHARS}', '', 'g')"
        )
        escaped = f"replace(replace(replace({clean}, '&', '&amp;'), '<', '&lt;'), '>', '&gt;')"
        space = f"CASE WHEN trim({expr}) = {expr} THEN '<t>' ELSE '<t xml:space=\"preserve\">' END"
        return f"{ref} t=\"inlineStr\"><is>' || {space} || {escaped} || '</t></is></c>'"

    if kind == "integer":
        body = f"{ref}><v>' || CAST({col} AS VARCHAR) || '</v></c>'"
    elif kind == "number":
        body = (
            f"CASE WHEN isfinite(CAST({col} AS DOUBLE)) "
            f"THEN {ref}><v>' || CAST({col} AS VARCHAR) || '</v></c>' ELSE '' END"
        )
    elif kind == "boolean":
        body = f"{ref} t=\"b\"><v>' || CASE WHEN {col} THEN '1' ELSE '0' END || '</v></c>'"
    elif kind == "date":
        # Excel serial days from 1899-12-30 (valid from 1900-03-01); earlier dates as text.
        body = (
            f"CASE WHEN isfinite({col}) AND {col} >= DATE '1900-03-01' "
            f"THEN {ref} s=\"{date_xf}\"><v>' || CAST({col} - DATE '1899-12-30' AS VARCHAR)"
            f" || '</v></c>' ELSE {text(f'CAST({col} AS VARCHAR)')} END"
        )
    elif kind == "timestamp":
        ts = f"CAST({col} AS TIMESTAMP)"
        body = (
            f"CASE WHEN isfinite({ts}) AND {ts} >= TIMESTAMP '1900-03-01' "
            f'THEN {ref} s="{datetime_xf}"><v>\' || '
            f"CAST(epoch_us({ts}) / 86400000000.0 + 25569 AS VARCHAR) || '</v></c>' "
            f"ELSE {text(f'CAST({col} AS VARCHAR)')} END"
        )
    elif kind == "string":
        body = text(col)
    else:
        body = text(f"CAST({col} AS VARCHAR)")
    return f"CASE WHEN {col} IS NULL THEN '' ELSE {body} END"


def rows_xml_sql(
    columns: dict[str, str], *, rows_per_sheet: int, date_xf: int, datetime_xf: int
) -> str:
    """SQL returning one `<row>` element per data row, numbered within its sheet."""
    cells = " || ".join(
        _cell_sql(name, t, xl_col_to_name(i), date_xf, datetime_xf)
        for i, (name, t) in enumerate(columns.items())
    )
    per_sheet = rows_per_sheet - 1
    return f"""
        SELECT '<row r="' || {_ROW_ALIAS} || '">' || {cells} || '</row>'
        FROM (SELECT *, CAST((row_number() OVER () - 1) % {per_sheet} + 2 AS VARCHAR)
                        AS {_ROW_ALIAS} FROM data)
    """


def stream_threads() -> int:
    """DuckDB threads while streaming rows: the cores left after the deflate thread, 1-4."""
    return max(1, min(4, (os.cpu_count() or 2) - 1))


class _BackgroundWriter:
    """Writes byte chunks to a file object from a second thread: zlib releases the GIL, so
    deflating one chunk overlaps with DuckDB producing the next."""

    def __init__(self, fh: IO[bytes], depth: int = 2) -> None:
        self._fh = fh
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="xlsx-deflate", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self._error is None:
                try:
                    self._fh.write(item)
                except BaseException as exc:  # reported to the producer on its next write
                    self._error = exc

    def write(self, data: bytes) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(data)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error


def _stream_sheet(
    zout: zipfile.ZipFile,
    name: str,
    skeleton_xml: bytes,
    rows: Iterable[bytes],
    *,
    last_ref: str,
    big: bool,
) -> None:
    """Write one data sheet: the skeleton's XML with the streamed rows spliced in."""
    head, sep, tail = skeleton_xml.partition(b"</sheetData>")
    if not sep:
        raise RuntimeError(f"unexpected worksheet XML in {name}")
    head = re.sub(
        rb'<dimension ref="[^"]*"/>', f'<dimension ref="A1:{last_ref}"/>'.encode(), head, count=1
    )
    with zout.open(name, "w", force_zip64=big) as fh:
        fh.write(head)
        writer = _BackgroundWriter(fh)
        try:
            for chunk in rows:
                writer.write(chunk)
        finally:
            writer.close()
        fh.write(sep + tail)


def build_excel(
    ds: Dataset,
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
    lengths = [c for c, t in columns.items() if column_kind(t) in {"string", "other"}]
    exprs = ["count(*)"] + [f"max(length(CAST({quote_ident(c)} AS VARCHAR)))" for c in lengths]
    first = ds.query(f"SELECT {', '.join(exprs)} FROM data", tick=progress.tick)[0]
    total_rows = int(first[0])
    widths = {c: int(w or 8) for c, w in zip(lengths, first[1:], strict=True)}

    progress.stage(4, 12, "Summary figures")
    summary = summarize(
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
    f = _Formats(wb)
    taken: set[str] = set()
    summary_ws = wb.add_worksheet(sheet_name("Summary", taken))
    group_sheets: dict[str, tuple[str, GroupTable]] = {}
    group_ws: list[tuple[Worksheet, GroupTable]] = []
    for column in p.group_by:
        ws = wb.add_worksheet(sheet_name(f"By {column}", taken))
        group_sheets[column] = (ws.name, summary.groups[column])
        group_ws.append((ws, summary.groups[column]))
    data_sheets: list[_DataSheet] = []
    n_sheets = max(1, math.ceil(total_rows / per_sheet))
    for k in range(n_sheets):
        rows_here = min(per_sheet, total_rows - k * per_sheet) if total_rows else 0
        ws = wb.add_worksheet(sheet_name("Data" if k == 0 else f"Data ({k + 1})", taken))
        for col, name in enumerate(columns):
            ws.write_string(0, col, name, f.header)
            kind = column_kind(columns[name])
            width = {"date": 12, "timestamp": 20, "integer": 11, "number": 13, "boolean": 8}.get(
                kind, min(60, max(10, widths.get(name, 10) + 2))
            )
            ws.set_column(col, col, max(width, min(30, len(name) + 3)))
        ws.freeze_panes(1, 0)
        ws.autofilter(0, 0, max(rows_here, 1), len(columns) - 1)
        data_sheets.append(_DataSheet(ws.name, ws.index, rows_here))
    _summary_sheet(wb, summary_ws, f, p, summary, ds.description, group_sheets)
    for ws, table in group_ws:
        _group_sheet(wb, ws, f, p, summary, table)
    date_xf, datetime_xf = _xf_index(f.date), _xf_index(f.datetime)
    wb.close()

    progress.stage(14, 99, "Writing data rows")
    sql = rows_xml_sql(
        columns, rows_per_sheet=rows_per_sheet, date_xf=date_xf, datetime_xf=datetime_xf
    )
    data_parts = {f"xl/worksheets/sheet{s.index + 1}.xml": s for s in data_sheets}
    last_col = xl_col_to_name(max(len(columns) - 1, 0))
    done = 0
    # One DuckDB thread fewer than cores: the deflate thread needs the other, and each extra
    # DuckDB thread holds its own buffers (about 20 MB of peak RSS on the 2-core benchmark).
    ds.con.execute(f"SET threads = {stream_threads()}")
    chunks = ds.iter_chunks(sql, chunk_rows=chunk_rows) if total_rows else iter(())
    pending: list[tuple[Any, ...]] = []

    def sheet_rows(count: int) -> Iterator[bytes]:
        """Exactly `count` rows' XML from the shared stream, in encoded chunks."""
        nonlocal done, pending
        left = count
        while left > 0:
            if not pending:
                pending = next(chunks, [])
                if not pending:
                    raise RuntimeError("the data ended before the expected row count")
            take, pending = pending[:left], pending[left:]
            left -= len(take)
            done += len(take)
            yield "".join([r[0] for r in take]).encode("utf-8")
            progress.update(done / max(total_rows, 1), f"Data rows {done:,} of {total_rows:,}")

    try:
        with (
            zipfile.ZipFile(skeleton_path) as zin,
            zipfile.ZipFile(
                out_path,
                "w",
                compression=zipfile.ZIP_DEFLATED,
                compresslevel=DATA_COMPRESSLEVEL,
                allowZip64=True,
            ) as zout,
        ):
            for item in zin.infolist():
                sheet = data_parts.get(item.filename)
                if sheet is None:
                    zout.writestr(item, zin.read(item.filename))
                    continue
                _stream_sheet(
                    zout,
                    item.filename,
                    zin.read(item.filename),
                    sheet_rows(sheet.rows),
                    last_ref=f"{last_col}{sheet.rows + 1}",
                    big=sheet.rows * max(len(columns), 1) > 20_000_000,
                )
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
