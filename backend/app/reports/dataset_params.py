"""A heavy report's job params: its dataset resolved for the caller, its columns checked."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.reports.dataset_store import DatasetNotFound, datasets
from app.reports.demo_datasets import columns_of_demo
from app.reports.errors import InvalidReportRequest
from app.reports.schemas import DemoDatasetRef, HeavyReportRequest
from app.reports.validation import check_output_rows, validate_request
from app.users.models import User


def prepare_heavy_params(
    *,
    session: Session,
    owner: User,
    request: HeavyReportRequest,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Resolve the request's dataset, check it against the columns, return the job params.

    Raises `DatasetNotFound` for a dataset that is not the caller's, and
    `InvalidReportRequest` (the message names the column or the limit) for a bad request.
    """
    settings = settings or get_settings()

    def check_rows(rows: int) -> None:
        check_output_rows(
            request,
            rows,
            max_rows=settings.REPORT_MAX_ROWS,
            max_excel_rows=settings.REPORT_MAX_EXCEL_ROWS,
        )

    if request.notify == "email" and not owner.email:
        raise InvalidReportRequest(
            "notify: 'email' needs an address on your user; set it with "
            "`reportctl token create NAME --email you@example.com`."
        )
    if isinstance(request.dataset, DemoDatasetRef):
        check_rows(request.dataset.rows)
        return validate_request(request, columns_of_demo(request.dataset.name))
    dataset_id = request.dataset.dataset_id
    dataset = datasets.find_owned(session=session, owner=owner, upload_id=dataset_id)
    if dataset is None:
        raise DatasetNotFound(dataset_id, f"no dataset with id {dataset_id!r} for this token")
    check_rows(int(dataset.row_count))
    params = validate_request(request, dict(dataset.columns), dataset_label=dataset.name)
    params.update(
        # A storage key, not a path: the worker may be on another host (it stages the object).
        dataset_key=datasets.key_of(dataset),
        dataset_format="parquet",  # what is stored, whatever was uploaded
        dataset_uploaded_as=dataset.format,  # what the user sent: named in the description
        dataset_name=dataset.name,
        dataset_rows=int(dataset.row_count),
    )
    return params
