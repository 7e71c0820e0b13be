"""Report job routes: submit, follow, list, cancel, download."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, status
from fastapi.responses import FileResponse

from app.api.deps import CurrentUser, SessionDep
from app.core.config import get_settings
from app.jobs import artifacts
from app.jobs.dispatch import get_dispatcher
from app.jobs.hybrid import reconcile
from app.jobs.schemas import JobAccepted, JobList, JobRead
from app.jobs.states import JobStatus
from app.jobs.store import reads
from app.jobs.submit import accept_job
from app.reports.dataset_params import prepare_heavy_params
from app.reports.schemas import DummyReportRequest, HeavyReportRequest

router = APIRouter(prefix="/reports", tags=["reports"])


@router.post("/dummy", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
def create_dummy_report(
    session: SessionDep,
    user: CurrentUser,
    body: Annotated[DummyReportRequest | None, Body()] = None,
) -> JobAccepted:
    """A small job that sleeps and can fail on purpose: Celery, else RQ, else embedded."""
    request = body or DummyReportRequest()
    accepted = accept_job(
        session=session, owner=user, job_type="dummy", params=request.model_dump()
    )
    return JobAccepted.model_validate(accepted)


@router.post("/heavy", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
def create_heavy_report(
    body: HeavyReportRequest, session: SessionDep, user: CurrentUser
) -> JobAccepted:
    """PDF, Excel or analysis report from a dataset. Runs on Celery only: while the broker is
    down the job waits `pending` and the outbox relay publishes it when it is back."""
    params = prepare_heavy_params(session=session, owner=user, request=body)
    accepted = accept_job(session=session, owner=user, job_type=body.report_type, params=params)
    return JobAccepted.model_validate(accepted)


@router.get("/jobs", response_model=JobList)
def list_jobs(
    session: SessionDep,
    user: CurrentUser,
    status_filter: Annotated[JobStatus | None, Query(alias="status")] = None,
    job_type: Annotated[str | None, Query(max_length=40)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobList:
    page = reads.list_jobs(
        session=session,
        user=user,
        status=status_filter.value if status_filter else None,
        job_type=job_type,
        limit=limit,
        offset=offset,
    )
    return JobList(
        items=[JobRead.model_validate(job) for job in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.get("/jobs/{job_id}", response_model=JobRead)
def get_job(job_id: str, session: SessionDep, user: CurrentUser) -> JobRead:
    """The DB row, reconciled with the backend's own view while the job is live."""
    job = reads.get_owned_job(session=session, user=user, job_id=job_id)
    backend_state = reconcile(job=job, dispatcher=get_dispatcher())
    return JobRead.model_validate(job).model_copy(update={"backend_state": backend_state})


@router.post("/jobs/{job_id}/cancel", response_model=JobRead)
def cancel_job(job_id: str, session: SessionDep, user: CurrentUser) -> JobRead:
    job = reads.get_owned_job(session=session, user=user, job_id=job_id)
    job = reads.cancel_job(session=session, job=job)
    session.commit()
    # No revoke is sent: a queued message for a cancelled job is dropped by the worker's claim,
    # and a running one stops at its next progress call.
    return JobRead.model_validate(job)


@router.get("/jobs/{job_id}/download", response_class=FileResponse)
def download(job_id: str, session: SessionDep, user: CurrentUser) -> FileResponse:
    job = reads.get_owned_job(session=session, user=user, job_id=job_id)
    path = artifacts.downloadable(get_settings(), job)
    return FileResponse(
        path,
        media_type=job.artifact_mime or "application/octet-stream",
        filename=job.artifact_name or path.name,
    )
