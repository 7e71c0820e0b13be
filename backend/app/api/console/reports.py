"""The console's report form: a heavy report from a demo dataset or an upload (upload
included), its column choices read from the dataset's schema.

The form posts the same request `POST /reports/heavy` takes (`HeavyReportRequest`) and goes
through the same checks (`prepare_heavy_params`, `accept_job`); a refusal shows the form
again with the message and the status the API would give. Without script the form still
works: "Show columns" reloads it for the chosen dataset; the script only does that in place.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.api.console.auth import COOKIE_PATH, ConsoleVisitor, PostingVisitor, Visitor
from app.api.console.render import message_of, page
from app.api.deps import SessionDep
from app.api.errors import status_of
from app.core.config import get_settings
from app.core.errors import DomainError
from app.jobs.submit import accept_job
from app.quotas.stored_bytes import check_stored_bytes
from app.reports.columns import column_kind
from app.reports.dataset_params import prepare_heavy_params
from app.reports.dataset_store import datasets, save_upload
from app.reports.demo_datasets import DEMO_DATASETS, MAX_DEMO_ROWS
from app.reports.schemas import HeavyReportRequest
from app.schedules import store as schedules
from app.schedules.schemas import ScheduleCreate
from app.webhooks.target import job_params

router = APIRouter()
DEMO_PREFIX, UPLOAD_PREFIX = "demo:", "upload:"
UPLOADS_SHOWN = 100
REPORT_TYPES = ("pdf", "excel", "analysis")
PERIODS = ("day", "week", "month", "quarter", "year")


def _choices(session: Session, visitor: Visitor) -> list[dict[str, Any]]:
    """Every dataset the caller may use: the demos, then their newest uploads."""
    demos = [
        {"value": f"{DEMO_PREFIX}{name}", "label": f"Demo: {name} ({demo.description})"}
        for name, demo in DEMO_DATASETS.items()
    ]
    uploads = datasets.list_owned(
        session=session, owner=visitor.user, limit=UPLOADS_SHOWN, offset=0
    ).items
    return demos + [
        {"value": f"{UPLOAD_PREFIX}{d.id}", "label": f"{d.name} ({d.row_count:,} rows)"}
        for d in uploads
    ]


def schema_of(session: Session, visitor: Visitor, ref: str) -> dict[str, Any] | None:
    """The columns of a dataset reference with the defaults a report takes, or None."""
    if ref.startswith(DEMO_PREFIX) and (demo := DEMO_DATASETS.get(ref[len(DEMO_PREFIX) :])):
        columns, group_by = demo.columns, list(demo.group_by)
        measures, date_column = list(demo.measures), demo.date_column
    elif ref.startswith(UPLOAD_PREFIX):
        row = datasets.find_owned(
            session=session, owner=visitor.user, upload_id=ref[len(UPLOAD_PREFIX) :]
        )
        if row is None:
            return None
        columns = dict(row.columns)
        group_by = []
        measures = [c for c, t in columns.items() if column_kind(t) in {"integer", "number"}]
        dates = [c for c, t in columns.items() if column_kind(t) in {"date", "timestamp"}]
        date_column = dates[0] if dates else None
    else:
        return None
    return {
        "columns": [{"name": c, "type": t, "kind": column_kind(t)} for c, t in columns.items()],
        "group_by": group_by,
        "measures": measures[:10],
        "date_column": date_column,
    }


def _form_page(
    request: Request,
    session: Session,
    visitor: Visitor,
    values: dict[str, Any],
    status_code: int = 200,
    error: str | None = None,
) -> Response:
    choices = _choices(session, visitor)
    ref = values.get("dataset") or choices[0]["value"]
    return page(
        request,
        "report_form.html",
        visitor,
        status_code,
        error=error,
        values={**values, "dataset": ref},
        choices=choices,
        schema=schema_of(session, visitor, ref),
        report_types=REPORT_TYPES,
        periods=PERIODS,
        max_demo_rows=MAX_DEMO_ROWS,
    )


@router.get("/reports/new", response_class=HTMLResponse)
def report_form(
    request: Request,
    session: SessionDep,
    visitor: ConsoleVisitor,
    dataset: Annotated[str, Query(max_length=80)] = "",
) -> Response:
    return _form_page(request, session, visitor, {"dataset": dataset, "report_type": "pdf"})


@router.get("/datasets/columns")
def dataset_columns(
    session: SessionDep, visitor: ConsoleVisitor, dataset: Annotated[str, Query(max_length=80)]
) -> JSONResponse:
    """What the form's script fills the column lists with."""
    schema = schema_of(session, visitor, dataset)
    if schema is None:
        return JSONResponse({"detail": "no such dataset for this user"}, status_code=404)
    return JSONResponse(schema, headers={"Cache-Control": "no-store"})


def request_of(form: FormData) -> dict[str, Any]:
    """The form's fields as the JSON body of `POST /reports/heavy`; numbers as numbers, an
    empty optional field left out, the column lists as given (none chosen: none)."""
    ref = str(form.get("dataset") or "")
    body: dict[str, Any] = {"report_type": form.get("report_type") or "pdf"}
    if ref.startswith(UPLOAD_PREFIX):
        body["dataset"] = {"source": "upload", "dataset_id": ref[len(UPLOAD_PREFIX) :]}
    else:
        body["dataset"] = {"source": "demo", "name": ref[len(DEMO_PREFIX) :] or "sales"}
        body["dataset"]["rows"] = _integer(form.get("rows"), "rows", 10_000)
    body["detail_rows"] = _integer(form.get("detail_rows"), "detail rows", 1_000)
    for name in ("title", "date_column", "period", "locale", "currency"):
        if value := str(form.get(name) or "").strip():
            body[name] = value
    body["group_by"] = [str(v) for v in form.getlist("group_by")]
    body["measures"] = [str(v) for v in form.getlist("measures")]
    if form.get("notify") == "email":
        body["notify"] = "email"
    return body


def _integer(value: Any, field: str, default: int) -> int:
    text = str(value or "").strip().replace(",", "").replace("_", "")
    if not text:
        return default
    if not text.isdigit():
        raise ValueError(f"{field}: expected a whole number, got {value!r}")
    return int(text)


@router.post("/reports")
async def submit_report(request: Request, session: SessionDep, visitor: PostingVisitor) -> Response:
    form = await request.form()  # already read (and kept) by the CSRF check
    return await run_in_threadpool(_submit, request, session, visitor, form)


def _submit(request: Request, session: Session, visitor: Visitor, form: FormData) -> Response:
    values = {k: form.get(k) for k in form} | {
        "group_by": form.getlist("group_by"),
        "measures": form.getlist("measures"),
    }
    try:
        body = HeavyReportRequest.model_validate(request_of(form))
        if form.get("action") == "schedule":
            return _schedule(session, visitor, form, body)
        params = prepare_heavy_params(session=session, owner=visitor.user, request=body)
        check_stored_bytes(session, visitor.user.id, get_settings())
        accepted = accept_job(
            session=session,
            owner=visitor.user,
            job_type=body.report_type,
            params=job_params(params, body.webhook_url),
        )
    except ValueError as exc:  # pydantic's ValidationError is one
        return _form_page(request, session, visitor, values, 422, message_of(exc))
    except DomainError as exc:
        return _form_page(request, session, visitor, values, status_of(exc), exc.message)
    return RedirectResponse(f"{COOKIE_PATH}/jobs/{accepted.job_id}", status_code=303)


def _schedule(
    session: Session, visitor: Visitor, form: FormData, report: HeavyReportRequest
) -> Response:
    """The form's "Create the schedule": the same report, on the cron expression given."""
    title = str(form.get("schedule_name") or "").strip() or report.title or "Scheduled report"
    body = ScheduleCreate.model_validate(
        {
            "name": title,
            "report": report.model_dump(exclude_none=True),
            "cron": str(form.get("cron") or "").strip(),
            "timezone": str(form.get("timezone") or "UTC").strip(),
        }
    )
    row = schedules.create(session=session, owner=visitor.user, body=body, settings=get_settings())
    return RedirectResponse(f"{COOKIE_PATH}/schedules/{row.id}", status_code=303)


@router.post("/datasets")
def upload_dataset(
    request: Request,
    session: SessionDep,
    visitor: PostingVisitor,
    file: Annotated[UploadFile, File()],
    name: Annotated[str, Form(max_length=255)] = "",
) -> Response:
    """As `POST /datasets`; then the form again, with the new dataset chosen."""
    settings = get_settings()
    try:
        check_stored_bytes(session, visitor.user.id, settings)
        row = save_upload(
            settings=settings,
            session=session,
            owner=visitor.user,
            source=file.file,
            filename=file.filename or "",
            name=name.strip() or None,
        )
        datasets.commit_saved(settings=settings, session=session, row=row)
    except DomainError as exc:
        session.rollback()
        values = {"report_type": "pdf"}
        return _form_page(request, session, visitor, values, status_of(exc), exc.message)
    return RedirectResponse(
        f"{COOKIE_PATH}/reports/new?dataset={UPLOAD_PREFIX}{row.id}", status_code=303
    )
