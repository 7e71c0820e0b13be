"""Checking a heavy report request against its dataset's columns, into the job's params.

Shape errors are caught by pydantic at the API edge (`schemas.py`). Column errors need the
dataset's schema, so `validate_request` runs once the dataset is resolved; it names the bad
column and lists the good ones, because "422: invalid request" helps nobody. What it returns
is the job's params: plain JSON, everything a worker needs, with the defaults made explicit.
"""

from __future__ import annotations

from typing import Any

from app.reports.columns import is_numeric, is_temporal, require_column
from app.reports.demo_datasets import DEMO_DATASETS
from app.reports.errors import InvalidReportRequest
from app.reports.locale_style import DEFAULT_LOCALE, style_for
from app.reports.queries import filter_sql
from app.reports.schemas import DemoDatasetRef, HeavyReportRequest

MAX_AUTO_MEASURES = 6


def _default_title(report_type: str, dataset: str) -> str:
    kind = {"pdf": "PDF report", "excel": "Excel workbook", "analysis": "Data analysis"}
    return f"{kind.get(report_type, 'Report')}: {dataset}"


def check_output_rows(
    request: HeavyReportRequest, rows: int, *, max_rows: int, max_excel_rows: int
) -> None:
    """Refuse at submit a report that would read or write more rows than the settings allow.

    `rows` is the dataset's row count before filters (a demo's `rows`, an upload's count):
    filters run in the worker, so the cap is on what they could at most leave.
    """
    if isinstance(request.dataset, DemoDatasetRef) and rows > max_rows:
        raise InvalidReportRequest(
            f"dataset.rows: {rows:,} demo rows asked; the limit is {max_rows:,} (REPORT_MAX_ROWS)"
        )
    if request.report_type == "excel" and rows > max_excel_rows:
        raise InvalidReportRequest(
            f"an Excel workbook's Data sheets hold at most {max_excel_rows:,} rows "
            f"(REPORT_MAX_EXCEL_ROWS); this dataset has {rows:,} before filters: use fewer "
            "rows, or report_type 'pdf' or 'analysis', which summarise any number"
        )


def validate_request(
    request: HeavyReportRequest, columns: dict[str, str], *, dataset_label: str | None = None
) -> dict[str, Any]:
    """Check the request against the dataset's columns and return the job's params.

    Raises `InvalidReportRequest` naming the offending column and listing the available ones.
    `dataset_label` names the dataset in the default title.
    """
    if not columns:
        raise InvalidReportRequest("the dataset has no columns")
    demo = (
        DEMO_DATASETS.get(request.dataset.name)
        if isinstance(request.dataset, DemoDatasetRef)
        else None
    )

    if request.group_by is None:
        group_by = list(demo.group_by) if demo else []
    else:
        group_by = list(request.group_by)
    for column in group_by:
        require_column(column, "group_by", columns)

    if request.measures is None:
        if demo:
            measures = list(demo.measures)
        else:
            measures = [c for c, t in columns.items() if is_numeric(t)][:MAX_AUTO_MEASURES]
    else:
        measures = list(request.measures)
    for column in measures:
        duck_type = require_column(column, "measures", columns)
        if not is_numeric(duck_type):
            numeric = [c for c, t in columns.items() if is_numeric(t)]
            raise InvalidReportRequest(
                f"measure {column!r} is not numeric ({duck_type}); numeric columns: "
                f"{', '.join(numeric) or 'none'}"
            )
    overlap = set(group_by) & set(measures)
    if overlap:
        raise InvalidReportRequest(
            f"column {sorted(overlap)[0]!r} is both in group_by and in measures"
        )

    date_column = request.date_column
    if date_column is None and "date_column" not in request.model_fields_set:
        if demo:
            date_column = demo.date_column
        else:
            date_column = next((c for c, t in columns.items() if is_temporal(t)), None)
    if date_column is not None:
        duck_type = require_column(date_column, "date_column", columns)
        if not is_temporal(duck_type):
            temporal = [c for c, t in columns.items() if is_temporal(t)]
            raise InvalidReportRequest(
                f"date_column {date_column!r} is not a date or timestamp ({duck_type}); "
                f"date columns: {', '.join(temporal) or 'none'}"
            )

    filters = [f.model_dump() for f in request.filters]
    filter_sql(filters, columns)  # raises on a bad column or value
    if request.locale is not None or request.currency is not None:
        style_for(request.locale or DEFAULT_LOCALE, request.currency)  # raises UnknownLocale

    dataset = request.dataset.model_dump()
    label = dataset_label or (f"demo '{demo.name}'" if demo else "uploaded dataset")
    return {
        "report_type": request.report_type,
        "title": request.title or _default_title(request.report_type, label),
        "dataset": dataset,
        "columns": dict(columns),
        "group_by": group_by,
        "measures": measures,
        "date_column": date_column,
        "filters": filters,
        "period": request.period,
        "detail_rows": request.detail_rows,
        "notify": request.notify,
        "locale": request.locale,
        "currency": request.currency,
    }
