"""Report schedules: a heavy report on a cron expression or an interval, in a time zone,
optionally mailed to its owner and allowed recipients, or POSTed to a webhook. Each firing
is an ordinary job (status, retries, quotas and downloads as for `POST /reports/heavy`).
Only the owner sees a schedule (404 to others)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.api import responses
from app.api.deps import CurrentUser, SessionDep, StoringUser
from app.api.paging import Limit, Offset
from app.api.params import ResourceId
from app.core.config import get_settings
from app.core.errors import NotFoundError
from app.schedules import store
from app.schedules.schemas import (
    RunResult,
    ScheduleCreate,
    ScheduleList,
    ScheduleRead,
    ScheduleUpdate,
)

router = APIRouter(prefix="/schedules", tags=["schedules"], responses=responses.AUTHENTICATED)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ScheduleRead,
    responses={**responses.reads_body(), **responses.created("/schedules/{schedule_id}")},
)
def create_schedule(
    body: ScheduleCreate, session: SessionDep, user: CurrentUser, response: Response
) -> ScheduleRead:
    """Checked at once: a bad cron expression or time zone, a dataset that is not yours, an
    e-mail delivery without an address, a recipient you may not mail, a webhook delivery
    without a `webhook_url` or one to a private address: 422 naming the field."""
    row = store.create(session=session, owner=user, body=body, settings=get_settings())
    response.headers["Location"] = f"/schedules/{row.id}"
    return store.read(session, row)


@router.get("", response_model=ScheduleList)
def list_schedules(
    session: SessionDep, user: CurrentUser, limit: Limit = 50, offset: Offset = 0
) -> ScheduleList:
    rows, total = store.list_owned(session=session, owner=user, limit=limit, offset=offset)
    return ScheduleList(
        items=[store.read(session, row) for row in rows], total=total, limit=limit, offset=offset
    )


@router.get(
    "/{schedule_id}", response_model=ScheduleRead, responses=responses.errors(NotFoundError)
)
def get_schedule(schedule_id: ResourceId, session: SessionDep, user: CurrentUser) -> ScheduleRead:
    """The schedule, its next due time, and its last firings with their jobs."""
    row = store.get_owned(session=session, owner=user, schedule_id=schedule_id)
    return store.read(session, row)


@router.patch(
    "/{schedule_id}",
    response_model=ScheduleRead,
    responses=responses.reads_body(NotFoundError),
)
def update_schedule(
    schedule_id: ResourceId, body: ScheduleUpdate, session: SessionDep, user: CurrentUser
) -> ScheduleRead:
    """Rename, retime, change the delivery (checked as at creation), pause or resume (a
    resumed schedule runs at its next due time from now, not the ones it missed while paused)."""
    row = store.update(
        session=session, owner=user, schedule_id=schedule_id, body=body, settings=get_settings()
    )
    return store.read(session, row)


@router.delete(
    "/{schedule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses.errors(NotFoundError),
)
def delete_schedule(schedule_id: ResourceId, session: SessionDep, user: CurrentUser) -> Response:
    """The schedule and its firings; the jobs it created stay."""
    store.delete(session=session, owner=user, schedule_id=schedule_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{schedule_id}/run",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RunResult,
    responses=responses.submits(NotFoundError),
)
def run_schedule(schedule_id: ResourceId, session: SessionDep, user: StoringUser) -> RunResult:
    """Run it now (paused or not), outside its own times: one ordinary job."""
    fired = store.run_now(
        session=session, owner=user, schedule_id=schedule_id, settings=get_settings()
    )
    return RunResult(
        job_id=fired.job_id if fired else None, outcome=fired.outcome if fired else None
    )
