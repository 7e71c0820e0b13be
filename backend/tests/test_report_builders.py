"""The heavy report builders, called directly through the job handler, and their files opened.

Each builder's output is checked against an independent computation (pandas/numpy over the
same rows), never against its own numbers: the PDF with pypdf, the workbook with openpyxl and
its zip parts, the analysis JSON field by field.
"""

from __future__ import annotations

import inspect
import math
import re
import time
import zipfile
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import openpyxl
import pandas as pd
import pypdf
import pytest

from app.core.config import Settings
from app.jobs.context import JobContext
from app.jobs.errors import JobCancelled, PermanentJobError
from app.reports import datasets, excel, heavy
from app.reports.datasets import open_dataset, sniff_file
from app.reports.demo_datasets import columns_of_demo, demo_arrays
from app.reports.errors import InvalidReportRequest
from app.reports.params import ReportParams
from app.reports.progress import Progress
from app.reports.schemas import HeavyReportRequest
from app.reports.validation import validate_request

SALES = columns_of_demo("sales")


# ----------------------------------------------------------------------------- helpers


class Recorder:
    """A progress callback that records (time, percent, message) and can cancel the job."""

    def __init__(self, cancel_when: Callable[[list[str]], bool] | None = None) -> None:
        self.calls: list[tuple[float, float, str]] = []
        self.cancel_when = cancel_when
        self.started = time.monotonic()
        self.cancelled_at: float | None = None

    def __call__(self, percent: float, message: str) -> None:
        now = time.monotonic()
        self.calls.append((now, percent, message))
        if self.cancelled_at or (
            self.cancel_when and self.cancel_when([m for _, _, m in self.calls])
        ):
            # From now on the job is cancelled: every later call raises, as the runner's does.
            self.cancelled_at = self.cancelled_at or now
            raise JobCancelled("cancelled by test")


def make_ctx(tmp_path: Path, kind: str, params: dict[str, Any], progress: Any = None) -> JobContext:
    return JobContext(
        job_id="t",
        job_type=kind,
        params=params,
        owner_id=1,
        attempt=1,
        settings=Settings(ENVIRONMENT="test", VAR_DIR=tmp_path),
        report_progress=progress or (lambda p, m: None),
        check_cancelled=lambda: None,
        scratch_dir=tmp_path / "scratch",
    )


def demo_params(kind: str, rows: int, seed: int = 3, **extra: Any) -> dict[str, Any]:
    request = HeavyReportRequest.model_validate(
        {
            "report_type": kind,
            "dataset": {"source": "demo", "rows": rows, "seed": seed},
            **extra,
        }
    )
    return validate_request(request, SALES)


def demo_frame(rows: int, seed: int = 3) -> pd.DataFrame:
    """The same rows as the builders see, loaded into pandas for independent arithmetic."""
    frame = pd.DataFrame(demo_arrays("sales", rows, seed))
    frame["date"] = pd.to_datetime(frame["date"])
    return frame


def upload_params(kind: str, path: Path, fmt: str, **extra: Any) -> dict[str, Any]:
    columns, _ = sniff_file(path, fmt)
    request = HeavyReportRequest.model_validate(
        {
            "report_type": kind,
            "dataset": {"source": "upload", "dataset_id": "d1"},
            **extra,
        }
    )
    params = validate_request(request, columns)
    params.update(dataset_path=str(path), dataset_format=fmt, dataset_name=path.name)
    return params


# ----------------------------------------------------------------------------- spec


def test_unknown_column_is_named_with_the_available_ones() -> None:
    request = HeavyReportRequest(report_type="pdf", measures=["revnue"])
    with pytest.raises(InvalidReportRequest) as err:
        validate_request(request, SALES)
    message = str(err.value)
    assert "'revnue'" in message and "measures" in message
    assert "did you mean 'revenue'" in message
    assert "available columns: date, region, product" in message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"group_by": ["regoin"]}, "unknown column 'regoin' in group_by"),
        ({"measures": ["region"]}, "measure 'region' is not numeric (VARCHAR)"),
        ({"date_column": "revenue"}, "date_column 'revenue' is not a date"),
        ({"date_column": "when"}, "unknown column 'when' in date_column"),
        ({"filters": {"colour": "red"}}, "unknown column 'colour' in filters"),
        (
            {"filters": [{"column": "quantity", "op": "gt", "value": "lots"}]},
            "filter on 'quantity': expected a number",
        ),
        (
            {"filters": [{"column": "date", "op": "ge", "value": "31/01/2024"}]},
            "expected an ISO date",
        ),
        (
            {"filters": [{"column": "region", "op": "between", "value": ["a"]}]},
            "'between' needs [low, high]",
        ),
        ({"group_by": ["revenue"], "measures": ["revenue"]}, "both in group_by and in measures"),
    ],
)
def test_bad_requests_say_what_is_wrong(body: dict[str, Any], fragment: str) -> None:
    request = HeavyReportRequest.model_validate({"report_type": "excel", **body})
    with pytest.raises(InvalidReportRequest) as err:
        validate_request(request, SALES)
    assert fragment in str(err.value)


def test_request_shape_limits() -> None:
    with pytest.raises(ValueError, match="extra"):
        HeavyReportRequest.model_validate({"report_type": "pdf", "colour": "blue"})
    with pytest.raises(ValueError):
        HeavyReportRequest.model_validate(
            {"report_type": "pdf", "dataset": {"source": "demo", "rows": 10_000_001}}
        )
    with pytest.raises(ValueError):
        HeavyReportRequest.model_validate({"report_type": "word"})
    with pytest.raises(ValueError):
        HeavyReportRequest.model_validate({"report_type": "pdf", "group_by": ["a", "b", "c", "d"]})
    ok = HeavyReportRequest.model_validate(
        {
            "report_type": "analysis",
            "notify": "email",
            "dataset": {"source": "upload", "dataset_id": "0b6c-11"},
        }
    )
    assert ok.notify == "email"


def test_defaults_are_made_explicit_in_the_params() -> None:
    params = validate_request(HeavyReportRequest(report_type="pdf"), SALES)
    assert params["group_by"] == ["region", "category"]
    assert params["measures"] == ["revenue", "margin", "quantity"]
    assert params["date_column"] == "date"
    assert params["dataset"] == {"source": "demo", "name": "sales", "rows": 10_000, "seed": 42}
    explicit = validate_request(
        HeavyReportRequest(report_type="pdf", group_by=[], date_column=None), SALES
    )
    assert explicit["group_by"] == [] and explicit["date_column"] is None
    upload_cols = {"day": "DATE", "shop": "VARCHAR", "amount": "DECIMAL(10,2)", "n": "BIGINT"}
    upload = validate_request(
        HeavyReportRequest(report_type="excel", dataset={"source": "upload", "dataset_id": "x"}),
        upload_cols,
    )
    assert upload["measures"] == ["amount", "n"]
    assert upload["date_column"] == "day" and upload["group_by"] == []


def test_filter_shorthand_and_values_become_safe_sql(tmp_path: Path) -> None:
    params = demo_params("analysis", 5_000, filters={"region": ["North", "It's"]})
    assert params["filters"] == [{"column": "region", "op": "in", "value": ["North", "It's"]}]
    from app.reports.queries import filter_sql

    sql = filter_sql(params["filters"], SALES)
    assert sql == "(\"region\" IN ('North', 'It''s'))"
    frame = demo_frame(5_000)
    with open_dataset(params["dataset"], filters_sql=sql) as ds:
        assert ds.row_count() == int((frame["region"] == "North").sum())


# ----------------------------------------------------------------------------- datasets


def test_demo_generator_is_deterministic_and_chunkable() -> None:
    whole = demo_arrays("sales", 2_000, 11)
    again = demo_arrays("sales", 2_000, 11)
    part = demo_arrays("sales", 2_000, 11, start=1_500, stop=2_000)
    other = demo_arrays("sales", 2_000, 12)
    assert list(whole) == list(SALES)
    for name in whole:
        assert np.array_equal(whole[name], again[name])
        assert np.array_equal(whole[name][1_500:], part[name])
    assert not np.array_equal(whole["revenue"], other["revenue"])
    np.testing.assert_allclose(
        whole["revenue"], np.round(whole["quantity"] * whole["unit_price"], 2)
    )
    assert whole["date"].min() >= np.datetime64("2023-01-01")
    assert whole["date"].max() <= np.datetime64("2025-12-31")
    assert (np.diff(whole["date"].astype("int64")) >= 0).all()  # an order log: dates ascend
    assert len(set(whole["region"])) == 5


def test_sniff_reads_csv_and_parquet_types(tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("day,shop,amount,flag\n2024-01-02,A,1.5,true\n2024-01-03,B,,false\n")
    columns, rows = sniff_file(csv, "csv")
    assert rows == 2
    assert columns == {"day": "DATE", "shop": "VARCHAR", "amount": "DOUBLE", "flag": "BOOLEAN"}
    parquet = tmp_path / "a.parquet"
    duckdb.connect().execute(f"COPY (SELECT * FROM read_csv('{csv}')) TO '{parquet}'")
    assert sniff_file(parquet, "parquet") == (columns, 2)


def test_a_cancelled_query_is_interrupted_promptly() -> None:
    with open_dataset({"source": "demo", "name": "sales", "rows": 10, "seed": 1}) as ds:
        started = time.monotonic()

        def tick(_: float) -> None:
            if time.monotonic() - started > 0.3:
                raise JobCancelled("stop")

        with pytest.raises(JobCancelled):
            ds.query("SELECT sum(hash(range)) FROM range(50000000000)", tick=tick)
        assert time.monotonic() - started < 2.0


# ----------------------------------------------------------------------------- PDF


def _pdf_text(path: Path) -> tuple[int, list[str]]:
    reader = pypdf.PdfReader(str(path))
    return len(reader.pages), [page.extract_text() for page in reader.pages]


def test_pdf_report_pages_text_and_vector_charts(tmp_path: Path) -> None:
    rows = 4_000
    params = demo_params("pdf", rows, detail_rows=300, title="Sales & margins 2023-2025")
    out = heavy.run(make_ctx(tmp_path, "pdf", params))
    assert out.artifact is not None and out.result is not None
    assert out.artifact.mime_type == "application/pdf"
    assert out.artifact.filename == "Sales-margins-2023-2025.pdf"
    pages, texts = _pdf_text(out.artifact.path)
    assert pages == out.result["pages"]
    frame = demo_frame(rows)

    assert "Sales & margins 2023-2025" in texts[0]
    assert f"{rows:,}" in texts[0]
    assert any("Summary" in t and "Total revenue" in t for t in texts[1:3])
    total = f"{frame['revenue'].sum():,.2f}"
    assert any(total in t for t in texts), f"total revenue {total} not printed"
    # Grouped tables: every region with its own sum, from pandas.
    by_region = frame.groupby("region")["revenue"].sum()
    region_text = next(t for t in texts if "By region" in t and "Share" in t)
    for region, value in by_region.items():
        assert region in region_text and f"{value:,.2f}" in region_text
    # A page per region (the first group_by), each with its own chart title.
    breakdown = [t for t in texts if re.search(r"region: (North|South|East|West|Central)", t)]
    assert len(breakdown) == 5 == out.result["group_pages"]
    assert all("Trend by month" in t for t in breakdown)
    # Page numbers on every page.
    for number, text in enumerate(texts, start=1):
        assert f"Page {number}" in text
    # Detail section: the first rows in dataset order, paginated with the header repeated.
    detail = [t for t in texts if "unit_price" in t and "channel" in t]
    assert len(detail) >= 300 // 45
    first = frame.iloc[0]
    assert f"{first['date']:%Y-%m-%d}" in detail[0] and first["product"] in detail[0]
    assert out.result["detail_rows"] == 300
    # Charts are vector drawings: no raster images anywhere in the file.
    reader = pypdf.PdfReader(str(out.artifact.path))
    for page in reader.pages:
        xobjects = page.get("/Resources", {}).get("/XObject", {})
        assert not any(xobjects[k].get("/Subtype") == "/Image" for k in xobjects)


def test_pdf_group_table_splits_with_repeated_header(tmp_path: Path) -> None:
    params = demo_params(
        "pdf", 6_000, group_by=["product"], measures=["revenue"], date_column=None, detail_rows=0
    )
    out = heavy.run(make_ctx(tmp_path, "pdf", params))
    assert out.artifact is not None and out.result is not None
    _, texts = _pdf_text(out.artifact.path)
    table_pages = [t for t in texts if "Σ revenue" in t and "avg revenue" in t]
    assert len(table_pages) >= 2, "200 products should span pages, header on each"
    assert out.result["groups"] == {"product": 200}
    assert out.result["group_pages"] == 0  # no time axis and no second grouping to break down
    assert out.result["detail_rows"] == 0


# ----------------------------------------------------------------------------- Excel


def _chart_kinds(path: Path) -> list[set[str]]:
    """The plot types of each native chart part (a two-axis chart holds two plots)."""
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if re.match(r"xl/charts/chart\d+\.xml", n))
        return [
            set(re.findall(r"<c:(lineChart|barChart|pieChart)>", z.read(n).decode())) for n in names
        ]


def test_excel_workbook_sheets_rows_types_and_charts(tmp_path: Path) -> None:
    rows = 3_000
    params = demo_params("excel", rows)
    out = heavy.run(make_ctx(tmp_path, "excel", params))
    assert out.artifact is not None and out.result is not None
    path = out.artifact.path
    wb = openpyxl.load_workbook(path, read_only=True)
    assert wb.sheetnames == ["Summary", "By region", "By category", "Data"]
    data = list(wb["Data"].iter_rows(values_only=True))
    assert data[0] == tuple(SALES)
    assert len(data) == rows + 1
    frame = demo_frame(rows)
    for i in (0, 1, rows // 2, rows - 1):
        got = data[i + 1]
        want = frame.iloc[i]
        assert got[0] == want["date"].to_pydatetime()
        assert got[1:5] == tuple(want[["region", "product", "category", "channel"]])
        assert got[5] == want["quantity"] and isinstance(got[5], int)
        assert got[6:] == pytest.approx(
            tuple(want[["unit_price", "unit_cost", "revenue", "margin"]])
        )
    assert sum(r[8] for r in data[1:]) == pytest.approx(frame["revenue"].sum())
    # Group sheet numbers against pandas.
    groups = {r[0]: r for r in wb["By category"].iter_rows(min_row=2, values_only=True) if r[0]}
    expected = frame.groupby("category").agg(n=("revenue", "size"), s=("revenue", "sum"))
    for category, row in expected.iterrows():
        assert groups[category][1] == row["n"]
        assert groups[category][2] == pytest.approx(row["s"])
    wb.close()

    full = openpyxl.load_workbook(path)
    ws = full["Data"]
    assert ws.freeze_panes == "A2"
    assert ws.auto_filter.ref == f"A1:J{rows + 1}"
    assert ws["A2"].number_format == "yyyy-mm-dd" and ws["A2"].is_date
    assert full["By region"].freeze_panes == "A2"
    full.close()
    kinds = _chart_kinds(path)
    # Summary: trend (line), top groups (bar), shares (pie); then one bar per group sheet.
    assert kinds == [{"lineChart"}, {"barChart"}, {"pieChart"}, {"barChart"}, {"barChart"}]
    assert out.result["sheets"] == ["Summary", "By region", "By category", "Data"]


def test_excel_splits_data_at_the_sheet_row_limit(tmp_path: Path) -> None:
    params = demo_params("excel", 250, group_by=["region"])
    p = ReportParams.from_params(params)
    out_path = tmp_path / "split.xlsx"
    with open_dataset(p.source) as ds:
        result = excel.build_excel(
            ds, p, out_path, Progress(lambda *_: None), scratch_dir=tmp_path, rows_per_sheet=101
        )
    assert result["data_sheets"] == 3
    wb = openpyxl.load_workbook(out_path, read_only=True)
    assert wb.sheetnames == ["Summary", "By region", "Data", "Data (2)", "Data (3)"]
    sizes, revenue = [], []
    for name in ("Data", "Data (2)", "Data (3)"):
        sheet = list(wb[name].iter_rows(values_only=True))
        assert sheet[0] == tuple(SALES)
        sizes.append(len(sheet) - 1)
        revenue += [r[8] for r in sheet[1:]]
    assert sizes == [100, 100, 50]
    assert revenue == pytest.approx(list(demo_frame(250)["revenue"]))  # same rows, same order
    wb.close()
    full = openpyxl.load_workbook(out_path)
    assert full["Data (3)"].auto_filter.ref == "A1:J51"
    full.close()


def test_excel_row_limit_default_is_excels() -> None:
    assert excel.EXCEL_MAX_ROWS == 1_048_576
    default = inspect.signature(excel.build_excel).parameters["rows_per_sheet"].default
    assert default == excel.EXCEL_MAX_ROWS
    sql = excel.rows_xml_sql({"a": "INTEGER"}, rows_per_sheet=default, date_xf=1, datetime_xf=2)
    assert "% 1048575 + 2" in sql  # 1,048,575 data rows under the header, rows 2..1,048,576


def test_excel_cells_survive_awkward_values(tmp_path: Path) -> None:
    """Text that needs XML escaping, control characters, NULLs, NaN/inf, old dates,
    timestamps, booleans and decimals, from an uploaded Parquet file."""
    parquet = tmp_path / "odd.parquet"
    duckdb.connect().execute(f"""
        COPY (SELECT * FROM (VALUES
            (1, 'a & b <c> "q" ''s''', 1.5::DOUBLE, DATE '2024-02-29',
             TIMESTAMP '2024-02-29 13:45:30', true, 12.34::DECIMAL(10,2)),
            (2, '  padded  ', 'nan'::DOUBLE, DATE '1899-06-01',
             TIMESTAMP '1970-01-01 00:00:00', false, NULL),
            (3, 'bell' || chr(7) || 'tab' || chr(9) || 'end', 'inf'::DOUBLE, NULL, NULL,
             NULL, -0.5::DECIMAL(10,2)),
            (4, NULL, -2.25::DOUBLE, DATE '2000-01-01', NULL, true, 0::DECIMAL(10,2)),
            (5, 'émoji ✓ 漢字', 1e20::DOUBLE, DATE '9999-12-31', NULL, false, 1::DECIMAL(10,2))
        ) t(id, txt, x, d, ts, b, amount)) TO '{parquet}' (FORMAT parquet)
    """)
    params = upload_params("excel", parquet, "parquet", group_by=["b"])
    out = heavy.run(make_ctx(tmp_path, "excel", params))
    assert out.artifact is not None
    wb = openpyxl.load_workbook(out.artifact.path, read_only=True)
    rows = list(wb["Data"].iter_rows(values_only=True))
    assert rows[0] == ("id", "txt", "x", "d", "ts", "b", "amount")
    assert rows[1] == (
        1,
        "a & b <c> \"q\" 's'",
        1.5,
        datetime(2024, 2, 29),
        datetime(2024, 2, 29, 13, 45, 30),
        True,
        12.34,
    )
    assert rows[2][1] == "  padded  " and rows[2][2] is None
    assert rows[2][3] == "1899-06-01"  # before Excel's calendar: kept as text
    assert rows[2][4] == datetime(1970, 1, 1) and rows[2][5] is False
    assert rows[3][1] == "belltab\tend" and rows[3][2] is None and rows[3][3] is None
    assert rows[4][1] is None and rows[4][2] == -2.25 and rows[4][6] == 0
    assert rows[5][1] == "émoji ✓ 漢字" and rows[5][2] == 1e20
    assert rows[5][3] == datetime(9999, 12, 31)
    wb.close()


# ----------------------------------------------------------------------------- analysis


def test_analysis_numbers_match_an_independent_computation(tmp_path: Path) -> None:
    rows = 20_000
    params = demo_params("analysis", rows, seed=5)
    out = heavy.run(make_ctx(tmp_path, "analysis", params))
    assert out.result is not None and out.artifact is not None
    r = out.result
    df = demo_frame(rows, seed=5)
    measures = ["revenue", "margin", "quantity"]

    assert r["rows"] == rows
    for m in measures:
        assert r["totals"][m]["sum"] == pytest.approx(df[m].sum())
        assert r["totals"][m]["avg"] == pytest.approx(df[m].mean())
    for name in SALES:
        stats, col = r["columns"][name], df[name]
        assert stats["count"] == col.count() and stats["nulls"] == 0
        assert stats["distinct"] == col.nunique()
        if name in {"quantity", "unit_price", "unit_cost", "revenue", "margin"}:
            q1, med, q3 = col.quantile([0.25, 0.5, 0.75])
            assert stats["mean"] == pytest.approx(col.mean())
            assert stats["std"] == pytest.approx(col.std())
            assert (stats["p25"], stats["median"], stats["p75"]) == pytest.approx((q1, med, q3))
            assert (stats["min"], stats["max"]) == (col.min(), col.max())
    top = df["product"].value_counts().head(5)
    assert [t["count"] for t in r["columns"]["product"]["top_values"]] == list(top.values)

    for column in ("region", "category"):
        expected = df.groupby(column).agg(
            rows=("revenue", "size"), revenue=("revenue", "sum"), margin_mean=("margin", "mean")
        )
        expected = expected.sort_values("revenue", ascending=False)
        got = r["groups"][column]
        assert got["total_groups"] == len(expected)
        assert [g["value"] for g in got["top"]] == list(expected.index)
        for g in got["top"]:
            row = expected.loc[g["value"]]
            assert g["rows"] == row["rows"]
            assert g["sums"]["revenue"] == pytest.approx(row["revenue"])
            assert g["means"]["margin"] == pytest.approx(row["margin_mean"])
            assert g["share_pct"] == pytest.approx(100 * row["revenue"] / df["revenue"].sum())

    monthly = df.groupby(df["date"].dt.to_period("M"))["revenue"].sum()
    points = r["trend"]["points"]
    assert [pt["period"] for pt in points] == [str(p) for p in monthly.index]
    assert [pt["sums"]["revenue"] for pt in points] == pytest.approx(list(monthly.values))
    growth = monthly.pct_change() * 100
    for before, pt, g in zip(points, points[1:], growth.values[1:], strict=False):
        if pt["partial"] or before["partial"]:  # a partial period compares nothing
            assert pt["growth_pct"]["revenue"] is None
        else:
            assert pt["growth_pct"]["revenue"] == pytest.approx(g)
    assert not any(pt["partial"] for pt in points[1:-1])  # only the ends can be partial
    by_start = {pt["period"]: pt for pt in points}
    yoy = by_start["2025-03"]["yoy_pct"]["revenue"]
    assert yoy == pytest.approx(100 * (monthly["2025-03"] / monthly["2024-03"] - 1))

    corr = df[measures].corr()
    matrix = r["correlations"]["matrix"]
    assert r["correlations"]["columns"] == measures
    for i, a in enumerate(measures):
        for j, b in enumerate(measures):
            assert matrix[i][j] == pytest.approx(corr.loc[a, b])

    assert "Q1 - 1.5 x IQR" in r["outliers"]["method"]
    for m in measures:
        q1, q3 = df[m].quantile([0.25, 0.75])
        low, high = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
        got = r["outliers"]["measures"][m]
        assert got["below"] == int((df[m] < low).sum())
        assert got["above"] == int((df[m] > high).sum())
        assert got["count"] > 0
        if got["examples_high"]:
            assert got["examples_high"][0][m] == pytest.approx(df[m].max())

    html = out.artifact.path.read_text()
    assert out.artifact.mime_type.startswith("text/html")
    assert "<svg" in html and r["title"].replace("'", "&#39;") in html
    assert "Outliers" in html and "Tukey" in html


def test_analysis_of_an_uploaded_csv_with_nulls(tmp_path: Path) -> None:
    csv = tmp_path / "shops.csv"
    lines = ["day,shop,amount,visits"]
    rng = np.random.default_rng(1)
    expected_amount = 0.0
    for i in range(400):
        amount = "" if i % 10 == 0 else f"{rng.normal(100, 20):.2f}"
        expected_amount += float(amount or 0)
        lines.append(f"2024-{1 + i % 12:02d}-{1 + i % 28:02d},shop {i % 7},{amount},{i % 13}")
    csv.write_text("\n".join(lines) + "\n")
    params = upload_params("analysis", csv, "csv", group_by=["shop"])
    out = heavy.run(make_ctx(tmp_path, "analysis", params))
    assert out.result is not None
    r = out.result
    assert r["measures"] == ["amount", "visits"] and r["date_column"] == "day"
    assert r["columns"]["amount"]["nulls"] == 40
    assert r["totals"]["amount"]["sum"] == pytest.approx(expected_amount)
    assert r["groups"]["shop"]["total_groups"] == 7


def test_uploaded_dataset_missing_file_fails_permanently(tmp_path: Path) -> None:
    csv = tmp_path / "gone.csv"
    csv.write_text("a,b\n1,2\n")
    params = upload_params("pdf", csv, "csv")
    csv.unlink()
    with pytest.raises(PermanentJobError, match="no longer exists"):
        heavy.run(make_ctx(tmp_path, "pdf", params))


# ----------------------------------------------------------------------------- progress


@pytest.mark.parametrize(
    ("kind", "rows", "extra"),
    [
        ("pdf", 60_000, {"detail_rows": 3_000}),
        ("excel", 300_000, {}),
        ("analysis", 600_000, {}),
    ],
)
def test_progress_is_reported_at_least_every_second(
    tmp_path: Path, kind: str, rows: int, extra: dict[str, Any]
) -> None:
    recorder = Recorder()
    out = heavy.run(make_ctx(tmp_path, kind, demo_params(kind, rows, **extra), recorder))
    assert out.artifact is not None
    times = [recorder.started] + [t for t, _, _ in recorder.calls]
    gaps = np.diff(times)
    assert gaps.max() < 1.0, f"a {gaps.max():.2f}s silence in {kind}"
    percents = [p for _, p, _ in recorder.calls]
    assert percents == sorted(percents), "progress went backwards"
    assert percents[-1] == 100 and all(m for _, _, m in recorder.calls)


@pytest.mark.parametrize(
    ("kind", "rows", "extra", "stage"),
    [
        ("pdf", 2_000_000, {"detail_rows": 0}, "Preparing data"),  # inside a DuckDB query
        ("pdf", 200_000, {"detail_rows": 100_000}, "Detail rows"),  # in the page layout loop
        ("excel", 2_000_000, {}, "Data rows"),  # while streaming rows
        ("analysis", 1_000_000, {}, "Grouping by"),  # between aggregate queries
    ],
)
def test_cancel_stops_a_build_within_seconds(
    tmp_path: Path, kind: str, rows: int, extra: dict[str, Any], stage: str
) -> None:
    """The job is cancelled the second time the builder reports from `stage` (the first call
    of a stage is its start; the second comes from inside its work)."""
    recorder = Recorder(lambda messages: sum(m.startswith(stage) for m in messages) >= 2)
    ctx = make_ctx(tmp_path, kind, demo_params(kind, rows, **extra), recorder)
    with pytest.raises(JobCancelled):
        heavy.run(ctx)
    assert recorder.cancelled_at is not None
    assert time.monotonic() - recorder.cancelled_at < 2.0
    assert recorder.calls[-1][2].startswith(stage)
    leftovers = [p for p in (tmp_path / "scratch").rglob("*") if p.is_file()]
    assert leftovers == [], "partial files left behind"


def test_demo_columns_match_the_generator() -> None:
    with open_dataset({"source": "demo", "name": "sales", "rows": 3, "seed": 0}) as ds:
        assert ds.columns == SALES
        first = ds.query("SELECT * FROM data LIMIT 1")[0]
    assert isinstance(first[0], date) and not math.isnan(first[-1])
    assert datasets.describe_source(
        {"source": "demo", "name": "sales", "rows": 3, "seed": 0}
    ).startswith("Demo dataset 'sales' (3 rows, seed 0)")


@pytest.mark.parametrize("kind", ["pdf", "excel", "analysis"])
def test_filters_that_match_nothing_still_build(tmp_path: Path, kind: str) -> None:
    params = demo_params(kind, 500, filters=[{"column": "quantity", "op": "gt", "value": 10**6}])
    out = heavy.run(make_ctx(tmp_path, kind, params))
    assert out.result is not None and out.result["rows"] == 0
    assert out.artifact is not None and out.artifact.path.stat().st_size > 0
    if kind == "excel":
        wb = openpyxl.load_workbook(out.artifact.path, read_only=True)
        assert list(wb["Data"].iter_rows(values_only=True)) == [tuple(SALES)]
        wb.close()
