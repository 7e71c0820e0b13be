"""Request and response bodies of the report and dataset endpoints (pydantic): shape and limits.

Shape errors are caught here, at the API edge, before any dataset is looked at. Whether the
named columns exist is a question for `validation.py`, which needs the dataset's schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from app.core.schemas import JsonInt, StrictModel
from app.reports.columns import column_kind
from app.reports.demo_datasets import MAX_DEMO_ROWS
from app.webhooks.fields import WEBHOOK_URL_FIELD

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
DEFAULT_DETAIL_ROWS = 1_000
MAX_DETAIL_ROWS = 100_000


class DummyReportRequest(StrictModel):
    """POST /reports/dummy body: a job that exercises the machinery, not a real report."""

    delay_seconds: float = Field(default=0, ge=0, le=60, description="How long the job sleeps.")
    fail_times: JsonInt = Field(
        default=0, ge=0, le=5, description="Transient failures before it succeeds."
    )
    webhook_url: str | None = WEBHOOK_URL_FIELD


class DemoDatasetRef(StrictModel):
    """A built-in generated dataset: reproducible from (name, rows, seed)."""

    source: Literal["demo"] = "demo"
    name: Literal["sales"] = "sales"
    rows: JsonInt = Field(default=10_000, ge=1, le=MAX_DEMO_ROWS)
    seed: JsonInt = Field(default=42, ge=0, le=2**31 - 1)


class UploadDatasetRef(StrictModel):
    """A dataset the caller uploaded with POST /datasets."""

    source: Literal["upload"]
    dataset_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")


def _source(value: Any) -> Any:
    """The dataset's kind: `source`, which a demo dataset may leave out (its default)."""
    if isinstance(value, Mapping):
        return value.get("source", "demo")
    return getattr(value, "source", None)


DatasetRef = Annotated[
    Annotated[DemoDatasetRef, Tag("demo")] | Annotated[UploadDatasetRef, Tag("upload")],
    Discriminator(_source),
]


class Filter(StrictModel):
    """One condition on a column; all filters must hold (AND)."""

    column: str = Field(min_length=1, max_length=200)
    op: FilterOp = "eq"
    value: Scalar | list[Scalar] | None = None


class HeavyReportRequest(StrictModel):
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
    detail_rows: JsonInt = Field(default=DEFAULT_DETAIL_ROWS, ge=0, le=MAX_DETAIL_ROWS)
    notify: Literal["email"] | None = None
    webhook_url: str | None = WEBHOOK_URL_FIELD
    locale: str | None = Field(
        default=None,
        max_length=35,
        pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$",
        description="Number, date and currency formats of the audience (a CLDR tag: en, de, "
        "fr, ja, de-CH...). Omitted: 1,234.56 and ISO dates.",
    )
    currency: str | None = Field(
        default=None,
        pattern=r"^[A-Z]{3}$",
        description="ISO 4217 code (EUR, USD, JPY): the measures' sums and averages print as "
        "money in it (integer measures, such as counts, stay plain numbers).",
    )

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


class ColumnRead(BaseModel):
    name: str
    type: str
    """The DuckDB type, e.g. VARCHAR, DOUBLE, DATE, DECIMAL(10,2)."""
    kind: str
    """integer, number, date, timestamp, time, boolean, string or other."""


class DatasetRead(BaseModel):
    """One dataset as its owner sees it, read from the row (`DatasetRead.model_validate`)."""

    model_config = ConfigDict(from_attributes=True)

    dataset_id: str = Field(validation_alias=AliasChoices("dataset_id", "id"))
    name: str
    format: str
    size_bytes: int
    row_count: int
    columns: list[ColumnRead]
    created_at: datetime

    @field_validator("columns", mode="before")
    @classmethod
    def _columns_of_row(cls, value: Any) -> Any:
        """The row stores {name: DuckDB type}, in file order; the API lists them."""
        if isinstance(value, Mapping):
            return [
                ColumnRead(name=str(name), type=str(type_), kind=column_kind(str(type_)))
                for name, type_ in value.items()
            ]
        return value


class DatasetList(BaseModel):
    items: list[DatasetRead]
    total: int
    limit: int
    offset: int
