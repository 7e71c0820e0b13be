"""The console's job pages: the list with live progress, one job with its attempts, cancel and
re-run, and the event streams the pages' script listens to.

The streams are the API's own (`app.jobs.watch`, as `GET /reports/events` serves them), with
the console's cookie in place of a bearer token. An admin's list holds every user's jobs, so
an admin's stream follows every user's.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app.api.console.auth import COOKIE_PATH, ConsoleVisitor, PostingVisitor
from app.api.console.render import page
from app.api.deps import SessionDep
from app.api.errors import status_of
from app.api.params import ResourceId
from app.api.routes.events import LastEventId, as_sse
from app.core.config import get_settings
from app.core.errors import DomainError
from app.jobs import watch
from app.jobs.registry import KINDS
from app.jobs.schemas import JobRead
from app.jobs.states import JobStatus
from app.jobs.store import reads
from app.jobs.submit import accept_job
from app.quotas.stored_bytes import check_stored_bytes

router = APIRouter()
PAGE_SIZE = 25
HISTORY_KEYS = ("attempt", "outcome", "started_at", "ended_at", "worker", "error")


@dataclass(frozen=True)
class Filters:
    """The list's filters as the form sent them; a date range is whole days, in UTC."""

    status: str = ""
    job_type: str = ""
    since: str = ""
    until: str = ""

    def query(self, offset: int) -> str:
        pairs = [(k, v) for k, v in vars(self).items() if v] + [("offset", str(offset))]
        return urlencode(pairs)


def _day(text: str, field: str) -> date | None:
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{field}: expected a date as YYYY-MM-DD, got {text!r}") from None


def _start_of(day: date | None, *, days: int = 0) -> datetime | None:
    return None if day is None else datetime.combine(day + timedelta(days), time(), UTC)


@router.get("/jobs", response_class=HTMLResponse)
def job_list(
    request: Request,
    session: SessionDep,
    visitor: ConsoleVisitor,
    status: Annotated[str, Query(max_length=20)] = "",
    job_type: Annotated[str, Query(max_length=40)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    filters = Filters(status, job_type, since, until)
    statuses = [s.value for s in JobStatus]
    context: dict[str, Any] = {
        "filters": filters,
        "statuses": statuses,
        "kinds": sorted(KINDS),
        "jobs": [],
    }
    try:
        if status and status not in statuses:
            raise ValueError(f"status: not one of {', '.join(statuses)}")
        if job_type and job_type not in KINDS:
            raise ValueError(f"type: not one of {', '.join(sorted(KINDS))}")
        after, before = _day(since, "from"), _day(until, "to")
    except ValueError as exc:
        return page(request, "jobs.html", visitor, 422, error=str(exc), **context)
    listed = reads.list_job_fields(
        session=session,
        user=visitor.user,
        status=status or None,
        job_type=job_type or None,
        created_after=_start_of(after),
        created_before=_start_of(before, days=1),
        limit=PAGE_SIZE,
        offset=offset,
    )
    jobs = [
        JobRead.model_validate({**fields, "owner": listed.owners.get(fields["owner_id"])})
        for fields in listed.items
    ]
    return page(
        request,
        "jobs.html",
        visitor,
        **{**context, "jobs": jobs},
        total=listed.total,
        total_capped=listed.total_capped,
        offset=offset,
        page_size=PAGE_SIZE,
        live=not (status or job_type or since or until or offset),
    )


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job_page(
    request: Request, job_id: ResourceId, session: SessionDep, visitor: ConsoleVisitor
) -> Response:
    job = reads.get_owned_job(session=session, user=visitor.user, job_id=job_id)
    shown = watch.snapshot(job, reads.owner_name(session=session, user=visitor.user, job=job))
    return page(
        request,
        "job.html",
        visitor,
        job=shown,
        own=job.owner_id == visitor.user.id,
        history_keys=_history_keys(shown.history),
    )


def _history_keys(history: list[dict[str, object]]) -> list[str]:
    """The columns of the attempts table: the usual ones first, then any other an entry has."""
    present = {key for entry in history for key in entry}
    return [k for k in HISTORY_KEYS if k in present] + sorted(present - set(HISTORY_KEYS))


@router.post("/jobs/{job_id}/cancel")
def cancel(job_id: ResourceId, session: SessionDep, visitor: PostingVisitor) -> Response:
    job = reads.get_owned_job(session=session, user=visitor.user, job_id=job_id)
    reads.cancel_job(session=session, job=job)
    session.commit()
    return RedirectResponse(f"{COOKIE_PATH}/jobs/{job_id}", status_code=303)


@router.post("/jobs/{job_id}/rerun")
def rerun(
    request: Request, job_id: ResourceId, session: SessionDep, visitor: PostingVisitor
) -> Response:
    """As `POST /reports/jobs/{id}/rerun`: the caller's own job only, under their quotas."""
    job = reads.get_own_job(session=session, user=visitor.user, job_id=job_id)
    try:
        check_stored_bytes(session, visitor.user.id, get_settings())
        accepted = accept_job(
            session=session, owner=visitor.user, job_type=job.job_type, params=dict(job.params)
        )
    except DomainError as exc:
        return page(request, "error.html", visitor, status_of(exc), message=exc.message)
    return RedirectResponse(f"{COOKIE_PATH}/jobs/{accepted.job_id}", status_code=303)


def _watched(
    job_id: ResourceId, session: SessionDep, visitor: ConsoleVisitor
) -> tuple[JobRead, int]:
    """Before the stream starts, so that someone else's job is a plain 404."""
    job = reads.get_owned_job(session=session, user=visitor.user, job_id=job_id)
    shown = watch.snapshot(job, reads.owner_name(session=session, user=visitor.user, job=job))
    session.commit()  # no connection held while the stream is open
    return shown, job.owner_id


@router.get("/jobs/{job_id}/events", response_class=EventSourceResponse)
async def job_events(
    watched: Annotated[tuple[JobRead, int], Depends(_watched)],
    last_event_id: LastEventId = None,
) -> AsyncIterable[ServerSentEvent]:
    shown, owner_id = watched
    last = int(last_event_id) if last_event_id and last_event_id.isdigit() else None
    async for event in watch.follow_job(shown, owner_id, last):
        yield as_sse(event)


@router.get("/events", response_class=EventSourceResponse)
async def all_events(
    visitor: ConsoleVisitor,
    last_event_id: LastEventId = None,
) -> AsyncIterable[ServerSentEvent]:
    owner = watch.EVERY_OWNER if visitor.user.is_admin else visitor.user.id
    async for event in watch.follow_owner(owner, last_event_id):
        yield as_sse(event)
