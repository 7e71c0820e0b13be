"""The heavy report request: its shape (pydantic) and its check against a dataset's columns.

Shape errors are caught by pydantic at the API edge. Column errors need the dataset's schema,
so `validate_request` runs once the dataset is resolved; it names the bad column and lists the
good ones, because "422: invalid request" helps nobody. What it returns is the job's params:
plain JSON, everything a worker needs, with the defaults made explicit.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.reports.datasets import (
    DEMO_DATASETS,
    MAX_DEMO_ROWS,
    column_kind,
    is_numeric,
    is_temporal,
    quote_ident,
    quote_literal,
)

ReportType = Literal["pdf", "excel", "analysis"]
Period = Literal["day", "week", "month", "quarter", "year"]
FilterOp = Literal[
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "in",
    "not_in",
    "between",
    "contains",
    "is_null",
    "not_null",
]
Scalar = str | int | float | bool

MAX_GROUP_BY = 3
MAX_MEASURES = 10
MAX_FILTERS = 20
MAX_IN_VALUES = 1000
DEFAULT_DETAIL_ROWS = 1_000
MAX_DETAIL_ROWS = 100_000
MAX_AUTO_MEASURES = 6


class InvalidReportRequest(ValueError):
    """The request does not fit the dataset; the message says which column and what exists."""

    status_code = 422


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DemoDatasetRef(_Strict):
    """A built-in generated dataset: reproducible from (name, rows, seed)."""

    source: Literal["demo"] = "demo"
    name: Literal["sales"] = "sales"
    rows: int = Field(default=10_000, ge=1, le=MAX_DEMO_ROWS)
    seed: int = Field(default=42, ge=0, le=2**31 - 1)


class UploadDatasetRef(_Strict):
    """A dataset the caller uploaded with POST /datasets."""

    source: Literal["upload"] = "upload"
    dataset_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")


DatasetRef = Annotated[DemoDatasetRef | UploadDatasetRef, Field(discriminator="source")]


class Filter(_Strict):
    """One condition on a column; all filters must hold (AND)."""

    column: str = Field(min_length=1, max_length=200)
    op: FilterOp = "eq"
    value: Scalar | list[Scalar] | None = None


class HeavyReportRequest(_Strict):
    """POST /reports/heavy body.

    Omitted `group_by`/`measures`/`date_column` take the dataset's defaults (demo datasets have
    curated ones; uploads get their numeric columns and first date column); an explicit `[]`
    means none. `filters` also accepts the shorthand {"column": value or [values]}.
    """

    report_type: ReportType
    dataset: DatasetRef = Field(default_factory=DemoDatasetRef)
    title: str | None = Field(default=None, min_length=1, max_length=200)
    group_by: list[str] | None = Field(default=None, max_length=MAX_GROUP_BY)
    measures: list[str] | None = Field(default=None, max_length=MAX_MEASURES)
    date_column: str | None = Field(default=None, max_length=200)
    filters: list[Filter] = Field(default_factory=list, max_length=MAX_FILTERS)
    period: Period = "month"
    detail_rows: int = Field(default=DEFAULT_DETAIL_ROWS, ge=0, le=MAX_DETAIL_ROWS)
    notify: Literal["email"] | None = None

    @field_validator("filters", mode="before")
    @classmethod
    def _shorthand_filters(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return [
                {"column": k, "op": "in" if isinstance(v, list) else "eq", "value": v}
                for k, v in value.items()
            ]
        return value

    @field_validator("title")
    @classmethod
    def _strip_title(cls, value: str | None) -> str | None:
        if value is not None:
            value = " ".join(value.split())
            if not value:
                raise ValueError("title must not be blank")
        return value

    @model_validator(mode="after")
    def _no_duplicates(self) -> HeavyReportRequest:
        for name, items in (("group_by", self.group_by), ("measures", self.measures)):
            if items and len(set(items)) != len(items):
                raise ValueError(f"{name} lists a column twice")
        return self


# ----------------------------------------------------------------------------- validation


def columns_of_demo(name: str) -> dict[str, str]:
    """Column name -> DuckDB type of a built-in dataset."""
    try:
        return dict(DEMO_DATASETS[name].columns)
    except KeyError:
        raise InvalidReportRequest(
            f"unknown demo dataset {name!r}; available: {', '.join(DEMO_DATASETS)}"
        ) from None


def _unknown(column: str, where: str, columns: dict[str, str]) -> InvalidReportRequest:
    hint = difflib.get_close_matches(column, list(columns), n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    return InvalidReportRequest(
        f"unknown column {column!r} in {where}{did_you_mean}; "
        f"available columns: {', '.join(columns)}"
    )


def _check_column(column: str, where: str, columns: dict[str, str]) -> str:
    if column not in columns:
        raise _unknown(column, where, columns)
    return columns[column]


def _literal(column: str, kind: str, value: Any) -> str:
    """A value as a SQL literal for the column's kind; refuses what cannot compare."""
    if isinstance(value, list) or value is None:
        raise InvalidReportRequest(f"filter on {column!r}: expected a single value, got {value!r}")
    if kind in {"integer", "number"}:
        if isinstance(value, bool):
            raise InvalidReportRequest(f"filter on {column!r}: expected a number, got {value!r}")
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value for c in ".eE") else int(value)
            except ValueError:
                raise InvalidReportRequest(
                    f"filter on {column!r}: expected a number, got {value!r}"
                ) from None
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidReportRequest(f"filter on {column!r}: number must be finite")
        return repr(value)
    if kind in {"date", "timestamp"}:
        text = str(value)
        try:
            if kind == "date":
                parsed: date = date.fromisoformat(text)
            else:
                parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidReportRequest(
                f"filter on {column!r}: expected an ISO date like 2024-01-31, got {value!r}"
            ) from None
        return f"{'DATE' if kind == 'date' else 'TIMESTAMP'} {quote_literal(parsed.isoformat())}"
    if kind == "boolean":
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if str(value).lower() in {"true", "false"}:
            return str(value).upper()
        raise InvalidReportRequest(f"filter on {column!r}: expected true or false, got {value!r}")
    return quote_literal(str(value))


_COMPARE = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def filter_sql(filters: list[dict[str, Any]], columns: dict[str, str]) -> str:
    """The WHERE condition for validated filters ('' when none). Values become escaped
    literals of the column's type, never raw text, so nothing reaches SQL unchecked."""
    parts: list[str] = []
    for f in filters:
        column, op, value = f["column"], f["op"], f.get("value")
        kind = column_kind(_check_column(column, "filters", columns))
        col = quote_ident(column)
        if op in _COMPARE:
            parts.append(f"{col} {_COMPARE[op]} {_literal(column, kind, value)}")
        elif op in {"in", "not_in"}:
            values = value if isinstance(value, list) else [value]
            if not values or len(values) > MAX_IN_VALUES:
                raise InvalidReportRequest(
                    f"filter on {column!r}: '{op}' needs 1 to {MAX_IN_VALUES} values"
                )
            items = ", ".join(_literal(column, kind, v) for v in values)
            parts.append(f"{col} {'NOT IN' if op == 'not_in' else 'IN'} ({items})")
        elif op == "between":
            if not isinstance(value, list) or len(value) != 2:
                raise InvalidReportRequest(f"filter on {column!r}: 'between' needs [low, high]")
            low, high = (_literal(column, kind, v) for v in value)
            parts.append(f"{col} BETWEEN {low} AND {high}")
        elif op == "contains":
            if not isinstance(value, str) or not value:
                raise InvalidReportRequest(f"filter on {column!r}: 'contains' needs some text")
            parts.append(f"contains(lower(CAST({col} AS VARCHAR)), {quote_literal(value.lower())})")
        elif op == "is_null":
            parts.append(f"{col} IS NULL")
        elif op == "not_null":
            parts.append(f"{col} IS NOT NULL")
        else:  # pragma: no cover - the Literal type forbids it
            raise InvalidReportRequest(f"unknown filter operator {op!r}")
    return " AND ".join(f"({p})" for p in parts)


def _default_title(report_type: str, dataset: str) -> str:
    kind = {"pdf": "PDF report", "excel": "Excel workbook", "analysis": "Data analysis"}
    return f"{kind.get(report_type, 'Report')}: {dataset}"


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
        _check_column(column, "group_by", columns)

    if request.measures is None:
        if demo:
            measures = list(demo.measures)
        else:
            measures = [c for c, t in columns.items() if is_numeric(t)][:MAX_AUTO_MEASURES]
    else:
        measures = list(request.measures)
    for column in measures:
        duck_type = _check_column(column, "measures", columns)
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
        duck_type = _check_column(date_column, "date_column", columns)
        if not is_temporal(duck_type):
            temporal = [c for c, t in columns.items() if is_temporal(t)]
            raise InvalidReportRequest(
                f"date_column {date_column!r} is not a date or timestamp ({duck_type}); "
                f"date columns: {', '.join(temporal) or 'none'}"
            )

    filters = [f.model_dump() for f in request.filters]
    filter_sql(filters, columns)  # raises on a bad column or value

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
    }


# ----------------------------------------------------------------------------- job side


@dataclass(frozen=True)
class ReportParams:
    """The job params as builders read them (the dict `validate_request` produced, plus the
    uploaded file's location filled in at submission)."""

    report_type: str
    title: str
    source: dict[str, Any]
    columns: dict[str, str]
    group_by: list[str]
    measures: list[str]
    date_column: str | None
    filters: list[dict[str, Any]]
    period: str = "month"
    detail_rows: int = DEFAULT_DETAIL_ROWS

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ReportParams:
        dataset = dict(params.get("dataset") or {"source": "demo"})
        columns = dict(params.get("columns") or {})
        if dataset.get("source") == "upload":
            if not params.get("dataset_path"):
                raise InvalidReportRequest("the uploaded dataset's file is not known")
            source: dict[str, Any] = {
                "source": "upload",
                "path": str(params["dataset_path"]),
                "format": params.get("dataset_format") or "csv",
                "columns": columns,
                "display_name": params.get("dataset_name") or dataset.get("dataset_id"),
            }
        else:
            demo = DemoDatasetRef.model_validate(dataset)
            source = demo.model_dump()
            columns = columns or columns_of_demo(demo.name)
        return cls(
            report_type=str(params.get("report_type", "pdf")),
            title=str(params.get("title") or "Report"),
            source=source,
            columns=columns,
            group_by=list(params.get("group_by") or []),
            measures=list(params.get("measures") or []),
            date_column=params.get("date_column"),
            filters=list(params.get("filters") or []),
            period=str(params.get("period") or "month"),
            detail_rows=int(params.get("detail_rows", DEFAULT_DETAIL_ROWS)),
        )

    def where_sql(self) -> str:
        return filter_sql(self.filters, self.columns)

    def filters_text(self) -> str:
        """Filters as a person reads them, for title pages."""
        if not self.filters:
            return "none"
        parts = []
        for f in self.filters:
            value = f.get("value")
            shown = "" if f["op"] in {"is_null", "not_null"} else f" {value!r}"
            parts.append(f"{f['column']} {f['op']}{shown}")
        return "; ".join(parts)


class Progress:
    """Maps a builder's stages onto 0-100 so each stage reports in its own terms.

    `report` is `JobContext.progress`: throttled, and raising `JobCancelled` when the job was
    cancelled, which is what makes frequent calls double as cancellation points.
    """

    def __init__(self, report: Callable[[float, str], None]) -> None:
        self._report = report
        self.start, self.end, self.message = 0.0, 100.0, ""

    def stage(self, start: float, end: float, message: str) -> None:
        self.start, self.end, self.message = start, end, message
        self._report(start, message)

    def update(self, fraction: float, message: str | None = None) -> None:
        fraction = min(1.0, max(0.0, fraction))
        self._report(self.start + (self.end - self.start) * fraction, message or self.message)

    def tick(self, duckdb_percent: float) -> None:
        """A `datasets.Tick`: DuckDB's own percent when it has one, else the stage start."""
        self.update(duckdb_percent / 100.0 if duckdb_percent > 0 else 0.0)
