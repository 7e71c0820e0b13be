"""A heavy report job's params as the worker reads them.

The params are the plain JSON `validation.validate_request` produced at submission (plus the
uploaded file's location); a worker may run them much later, on another machine, so it
reads them back defensively into one typed record that the builders share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.reports.demo_datasets import columns_of_demo
from app.reports.errors import InvalidReportRequest
from app.reports.locale_style import DEFAULT_LOCALE, PLAIN, NumberStyle, style_for
from app.reports.schemas import DEFAULT_DETAIL_ROWS, DemoDatasetRef


@dataclass(frozen=True)
class ReportParams:
    """The job params as builders read them (the dict `validate_request` produced, plus the
    uploaded file's storage key filled in at submission). An upload's `source` has `key`
    (staged to a local `path` by the handler) or, from an older job, `path` itself."""

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
    locale: str | None = None
    currency: str | None = None

    def style(self) -> NumberStyle:
        """How this report prints numbers, dates and money (`app.reports.locale_style`)."""
        if self.locale is None and self.currency is None:
            return PLAIN
        return style_for(self.locale or DEFAULT_LOCALE, self.currency)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ReportParams:
        dataset = dict(params.get("dataset") or {"source": "demo"})
        columns = dict(params.get("columns") or {})
        if dataset.get("source") == "upload":
            # `dataset_key` names the stored object; `dataset_path` (a host path) is what jobs
            # queued before the object store carry: still read, so they survive the upgrade.
            key, path = params.get("dataset_key"), params.get("dataset_path")
            if not key and not path:
                raise InvalidReportRequest("the uploaded dataset's file is not known")
            source: dict[str, Any] = {
                "source": "upload",
                **({"key": str(key)} if key else {"path": str(path)}),
                "format": params.get("dataset_format") or "csv",
                "columns": columns,
                "display_name": params.get("dataset_name") or dataset.get("dataset_id"),
                "uploaded_as": params.get("dataset_uploaded_as"),
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
            locale=params.get("locale"),
            currency=params.get("currency"),
        )

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
