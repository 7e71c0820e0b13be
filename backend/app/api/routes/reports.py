"""Report job routes: submit, follow, list, cancel, download."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Response, status
from fastapi.responses import FileResponse, StreamingResponse
from sqlalchemy.orm import Session

from app.api import responses
from app.api.deps import (
    BearerToken,
    CurrentUser,
    OptionalUser,
    SessionDep,
    StoringUser,
    in_one_hop,
    remembered_caller,
    require_user,
)
from app.api.paging import Limit, Offset
from app.api.params import CreatedAfter, CreatedBefore, JobType, ResourceId
from app.api.submits import submit_in_batch
from app.core.config import get_settings
from app.core.downloads import content_disposition, download_name
from app.core.errors import (
    ConflictError,
    ForbiddenError,
    GoneError,
    NotFoundError,
    TooManyRequestsError,
    UnavailableError,
)
from app.jobs import artifacts
from app.jobs.dispatch import get_dispatcher
from app.jobs.hybrid import reconcile, waiting_note
from app.jobs.schemas import JobAccepted, JobList, JobRead
from app.jobs.states import LIVE_STATUSES, JobStatus
from app.jobs.store import reads
from app.jobs.submit import JobOrder, accept_job
from app.reports.dataset_params import prepare_heavy_params
from app.reports.schemas import DummyReportRequest, HeavyReportRequest
from app.users.models import User
from app.webhooks.target import job_params

router = APIRouter(prefix="/reports", tags=["reports"], responses=responses.AUTHENTICATED)


@router.post(
    "/dummy",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=responses.submits(),
)
async def create_dummy_report(
    token: BearerToken,
    body: Annotated[DummyReportRequest | None, Body()] = None,
) -> Response:
    """A small job that sleeps and can fail on purpose: Celery, else RQ, else embedded.

    Written with the other submissions arriving at the same time (`app.api.submits`).
    Answers `JobAccepted` as JSON bytes made once: returned as a model, FastAPI would dump
    it, validate it again against `response_model` and dump it a second time."""
    request = body or DummyReportRequest()

    def order_of(session: Session, user: User) -> JobOrder:
        params = job_params(request.model_dump(exclude={"webhook_url"}), request.webhook_url)
        return JobOrder(owner=user, job_type="dummy", params=params)

    accepted = await submit_in_batch(token, order_of)
    content = JobAccepted.model_validate(accepted).model_dump_json().encode()
    return Response(content, status.HTTP_202_ACCEPTED, media_type="application/json")


@router.post(
    "/heavy",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=responses.submits(NotFoundError),
)
async def create_heavy_report(token: BearerToken, body: HeavyReportRequest) -> JobAccepted:
    """PDF, Excel or analysis report from a dataset. Runs on Celery only: while the broker is
    down the job waits `pending` and the outbox relay publishes it when it is back. Written
    with the other submissions arriving at the same time (`app.api.submits`)."""

    def order_of(session: Session, user: User) -> JobOrder:
        params = prepare_heavy_params(session=session, owner=user, request=body)
        return JobOrder(
            owner=user, job_type=body.report_type, params=job_params(params, body.webhook_url)
        )

    return JobAccepted.model_validate(await submit_in_batch(token, order_of))


@router.get("/jobs", response_model=JobList)
async def list_jobs(
    token: BearerToken,
    status_filter: Annotated[JobStatus | None, Query(alias="status")] = None,
    job_type: JobType = None,
    created_after: CreatedAfter = None,
    created_before: CreatedBefore = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> JobList:
    """The caller's jobs, newest first; an admin sees everyone's, each with its `owner`."""

    def page_of(session: Session, user: User) -> JobList:
        page = reads.list_job_fields(
            session=session,
            user=user,
            status=status_filter.value if status_filter else None,
            job_type=job_type,
            created_after=created_after,
            created_before=created_before,
            limit=limit,
            offset=offset,
        )
        return JobList(
            items=[
                JobRead.model_validate({**fields, "owner": page.owners.get(fields["owner_id"])})
                for fields in page.items
            ],
            total=page.total,
            total_capped=page.total_capped,
            limit=limit,
            offset=offset,
        )

    return await in_one_hop(token, page_of)


@router.get("/jobs/{job_id}", response_model=JobRead, responses=responses.errors(NotFoundError))
async def get_job(job_id: ResourceId, token: BearerToken) -> JobRead:
    """The DB row, reconciled with the backend's own view while the job is live."""
    if (user := remembered_caller(token)) is not None and (
        answer := await _read_on_loop(user, job_id)
    ) is not None:
        return answer
    return await in_one_hop(token, lambda session, user: _read_job(session, user, job_id))


async def _read_on_loop(user: User, job_id: str) -> JobRead | None:
    """`_read_job` on the event loop, without a thread: the caller's own job (SQLite read at
    once, PostgreSQL awaited), with no broker to ask about it. None: go to a thread."""
    fields = await reads.owned_job_fields_on_loop(user=user, job_id=job_id)
    if fields is None or fields["owner_id"] != user.id:
        return None  # a SQLite lock; an admin's look at another's job (a name lookup)
    if fields["status"] in LIVE_STATUSES and fields["backend"] not in (None, "local"):
        return None  # a live job's view from its broker is a network call
    return _shown(fields, user.name)


def _read_job(session: Session, user: User, job_id: str) -> JobRead:
    fields = reads.get_owned_job_fields(user=user, job_id=job_id)
    owner = reads.name_of_owner(session=session, user=user, owner_id=fields["owner_id"])
    return _shown(fields, owner)


def _shown(fields: dict[str, Any], owner: str | None) -> JobRead:
    """The job as `JobRead`, with the backend's view and the reason it waits if live."""
    fields["owner"] = owner
    if fields["status"] in LIVE_STATUSES:  # a final job has no backend view, nor a wait
        job = reads.job_stub(fields)
        dispatcher = get_dispatcher()
        fields["backend_state"] = reconcile(job=job, dispatcher=dispatcher)
        if note := waiting_note(job=job, dispatcher=dispatcher):
            fields["progress_message"] = note
    return JobRead.model_validate(fields)


@router.post(
    "/jobs/{job_id}/cancel",
    response_model=JobRead,
    responses=responses.errors(NotFoundError, ConflictError),
)
def cancel_job(job_id: ResourceId, session: SessionDep, user: CurrentUser) -> JobRead:
    job = reads.get_owned_job(session=session, user=user, job_id=job_id)
    job = reads.cancel_job(session=session, job=job)
    session.commit()
    # No revoke is sent: a queued message for a cancelled job is dropped by the worker's claim,
    # and a running one stops at its next progress call.
    return JobRead.model_validate(job)


@router.post(
    "/jobs/{job_id}/rerun",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=responses.errors(NotFoundError, TooManyRequestsError, UnavailableError),
)
def rerun_job(job_id: ResourceId, session: SessionDep, user: StoringUser) -> JobAccepted:
    """A new job with the same type and parameters as one of the caller's own jobs, under
    the same quotas as a submit. Someone else's job is a 404, for admins too."""
    job = reads.get_own_job(session=session, user=user, job_id=job_id)
    accepted = accept_job(
        session=session, owner=user, job_type=job.job_type, params=dict(job.params)
    )
    return JobAccepted.model_validate(accepted)


@router.get(
    "/jobs/{job_id}/download",
    response_class=FileResponse,
    responses={
        **responses.errors(ForbiddenError, NotFoundError, ConflictError, GoneError),
        **responses.file_download(),
    },
    openapi_extra=responses.OPTIONAL_BEARER,
)
def download(
    job_id: ResourceId,
    session: SessionDep,
    user: OptionalUser,
    expires: Annotated[int | None, Query(ge=0, le=2**40)] = None,
    signature: Annotated[
        str | None, Query(pattern="^[0-9a-f]{64}$", description="HMAC-SHA256, in hex.")
    ] = None,
) -> Response:
    """The job's file, with a bearer token, or with the signed link of the job's
    `download_url` (no token: a person can open it from an e-mail)."""
    if expires is None and signature is None:
        job = reads.get_owned_job(session=session, user=require_user(user), job_id=job_id)
    else:
        job = reads.get_linked_job(
            session=session,
            settings=get_settings(),
            job_id=job_id,
            expires=expires or 0,
            signature=signature or "",
        )
    file = artifacts.downloadable(get_settings(), job)
    # Named after the title as its author wrote it (the stored name is ASCII).
    return _send(file, download_name((job.params or {}).get("title"), file.filename))


def _send(file: artifacts.Download, name: str) -> Response:
    """The artifact through the API: a local file as a `FileResponse` (ranges, sendfile),
    a remote object as a stream of its chunks with its exact `Content-Length`.

    Streamed, not redirected to a presigned URL: the object store's endpoint may be private
    to the cluster (clients cannot reach it), and the API keeps owning access (the token or
    the signed link checked above; a presigned URL would be a second, storage-side
    credential that outlives a revoked token). Chunks are never held whole in memory.
    """
    disposition = {"Content-Disposition": content_disposition(name)}
    if file.path is not None:
        return FileResponse(file.path, media_type=file.media_type, headers=disposition)
    assert file.chunks is not None
    return StreamingResponse(
        file.chunks,
        media_type=file.media_type,
        headers={"Content-Length": str(file.size), **disposition},
    )
