"""Live job events as Server-Sent Events: one job until it ends, or all of the caller's.

Thin: the events come from `app.jobs.watch` (one watcher per process polls the job table,
whatever backend runs the jobs); this module reads the job with the job routes' ownership
rule, then writes each event as `event:` (`status` or `progress`), `id:` and `data:` (the
job JSON, as `GET /reports/jobs/{job_id}` shows it). FastAPI's `EventSourceResponse` sends a
`: ping` comment after 15 s without an event, so proxies keep the connection open.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Annotated

from fastapi import APIRouter, Depends, Header
from fastapi.sse import EventSourceResponse, ServerSentEvent

from app.api import responses
from app.api.deps import CurrentUser, SessionDep
from app.api.params import ResourceId
from app.core.errors import NotFoundError
from app.jobs import watch
from app.jobs.schemas import JobRead
from app.jobs.store import reads

router = APIRouter(prefix="/reports", tags=["reports"], responses=responses.json_errors(401, 422))

LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=40,
        description="The `id` of the last event received: the stream resumes after it.",
    ),
]


def _watched_job(job_id: ResourceId, session: SessionDep, user: CurrentUser) -> tuple[JobRead, int]:
    """Before the stream starts, so another user's job is a plain 404."""
    job = reads.get_owned_job(session=session, user=user, job_id=job_id)
    snapshot = watch.snapshot(job, reads.owner_name(session=session, user=user, job=job))
    session.commit()  # no connection held while the stream is open
    return snapshot, job.owner_id


def as_sse(event: watch.Event) -> ServerSentEvent:
    return ServerSentEvent(event=event.kind, id=event.id, raw_data=event.job.model_dump_json())


@router.get(
    "/jobs/{job_id}/events",
    response_class=EventSourceResponse,
    responses={**responses.json_errors(NotFoundError), **responses.event_stream()},
)
async def job_events(
    watched: Annotated[tuple[JobRead, int], Depends(_watched_job)],
    last_event_id: LastEventId = None,
) -> AsyncIterable[ServerSentEvent]:
    """The job's state now, then an event per status change and progress step; the stream
    ends after the final one (completed, failed or cancelled). `id` is the job's `version`."""
    job, owner_id = watched
    last = int(last_event_id) if last_event_id and last_event_id.isdigit() else None
    async for event in watch.follow_job(job, owner_id, last):
        yield as_sse(event)


@router.get(
    "/events",
    response_class=EventSourceResponse,
    responses=responses.event_stream(),
)
async def my_job_events(
    user: CurrentUser, last_event_id: LastEventId = None
) -> AsyncIterable[ServerSentEvent]:
    """Every status change and progress step of the caller's jobs (new ones included) from
    now on, or since `Last-Event-ID`. It does not end by itself."""
    async for event in watch.follow_owner(user.id, last_event_id):
        yield as_sse(event)
