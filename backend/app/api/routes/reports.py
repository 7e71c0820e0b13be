"""Report job routes: submit, follow, list, cancel, download."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Query, status
from fastapi.responses import FileResponse
from sqlalchemy.orm import Session

from app.api.deps import CurrentUser, SessionDep
from app.core.config import get_settings
from app.jobs import artifacts, service
from app.jobs.dispatch import get_dispatcher
from app.jobs.hybrid import reconcile
from app.jobs.submit import accept_job
from app.models import JobStatus, ReportJob, User
from app.reports.dataset_store import prepare_heavy_params
from app.reports.spec import HeavyReportRequest, InvalidReportRequest
from app.schemas import DummyReportRequest, JobAccepted, JobList, JobRead

router = APIRouter(prefix="/reports", tags=["reports"])

NOT_FOUND = "No job with this id for this token."


@router.post("/dummy", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
def create_dummy_report(
    session: SessionDep,
    user: CurrentUser,
    body: Annotated[DummyReportRequest | None, Body()] = None,
) -> JobAccepted:
    """A small job that sleeps and can fail on purpose: Celery, else RQ, else embedded."""
    request = body or DummyReportRequest()
    return accept_job(session=session, owner=user, job_type="dummy", params=request.model_dump())


@router.post("/heavy", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
def create_heavy_report(
    body: HeavyReportRequest, session: SessionDep, user: CurrentUser
) -> JobAccepted:
    """PDF, Excel or analysis report from a dataset. Runs on Celery only: while the broker is
    down the job waits `pending` and the outbox relay publishes it when it is back."""
    if body.notify == "email" and not user.email:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail="notify: 'email' needs an address on your user; set it with "
            "`reportctl token create NAME --email you@example.com`.",
        )
    try:
        params = prepare_heavy_params(session=session, owner_id=user.id, request=body)
    except InvalidReportRequest as exc:
        code = getattr(exc, "status_code", status.HTTP_422_UNPROCESSABLE_CONTENT)
        raise HTTPException(code, detail=str(exc)) from exc
    return accept_job(session=session, owner=user, job_type=body.report_type, params=params)


@router.get("/jobs", response_model=JobList)
def list_jobs(
    session: SessionDep,
    user: CurrentUser,
    status_filter: Annotated[JobStatus | None, Query(alias="status")] = None,
    job_type: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobList:
    page = service.list_jobs(
        session=session,
        user=user,
        status=status_filter.value if status_filter else None,
        job_type=job_type,
        limit=limit,
        offset=offset,
    )
    return JobList(
        items=[JobRead.from_job(job) for job in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.get("/jobs/{job_id}", response_model=JobRead)
def get_job(job_id: str, session: SessionDep, user: CurrentUser) -> JobRead:
    """The DB row, reconciled with the backend's own view while the job is live."""
    job = _owned(session, user, job_id)
    backend_state = reconcile(job=job, dispatcher=get_dispatcher())
    return JobRead.from_job(job, backend_state=backend_state)


@router.post("/jobs/{job_id}/cancel", response_model=JobRead)
def cancel_job(job_id: str, session: SessionDep, user: CurrentUser) -> JobRead:
    job = _owned(session, user, job_id)
    try:
        job = service.cancel_job(session=session, job=job)
    except service.JobAlreadyFinished as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=f"Cannot cancel: {exc}.") from exc
    session.commit()
    # No revoke is sent: a queued message for a cancelled job is dropped by the worker's claim,
    # and a running one stops at its next progress call.
    return JobRead.from_job(job)


@router.get("/jobs/{job_id}/download", response_class=FileResponse)
def download(job_id: str, session: SessionDep, user: CurrentUser) -> FileResponse:
    job = _owned(session, user, job_id)
    if job.status != JobStatus.COMPLETED or not job.artifact_path:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"Job {job.id} has no file to download (status: {job.status}).",
        )
    path = artifacts.resolve(get_settings(), job.artifact_path)
    if not path.is_file():
        raise HTTPException(status.HTTP_410_GONE, detail="The file of this job was removed.")
    return FileResponse(
        path,
        media_type=job.artifact_mime or "application/octet-stream",
        filename=job.artifact_name or path.name,
    )


def _owned(session: Session, user: User, job_id: str) -> ReportJob:
    try:
        return service.get_owned_job(session=session, user=user, job_id=job_id)
    except service.JobNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND) from None
