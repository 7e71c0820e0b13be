"""What the API reads and changes on behalf of a caller: one job, a page of jobs, a cancel.

Ownership is checked here, once: another user's job is reported exactly like a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar

from sqlalchemy import Column, ColumnElement, Select, bindparam, func, literal, select
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import ConflictError, NotFoundError
from app.db.base import utcnow
from app.db.prepared import PreparedStatement, WouldWait
from app.jobs import links
from app.jobs.models import ReportJob
from app.jobs.schemas import JobRead
from app.jobs.states import FINAL_STATUSES, LIVE_STATUSES, JobStatus
from app.jobs.store.transitions import JOBS, transition
from app.users.models import User

S = JobStatus
S_ = TypeVar("S_", bound=Select[Any])


class JobNotFound(NotFoundError):
    """No such job for this caller (also raised for other users' jobs: no existence oracle)."""

    def __init__(self, job_id: str) -> None:
        super().__init__("No job with this id for this token.")
        self.job_id = job_id


class JobAlreadyFinished(ConflictError):
    """The job reached a final status before the change could be made."""


def get_owned_job(*, session: Session, user: User, job_id: str) -> ReportJob:
    """The job if `user` may see it; other users' jobs look exactly like missing ones."""
    job = session.get(ReportJob, job_id)
    if job is None or (job.owner_id != user.id and not user.is_admin):
        raise JobNotFound(job_id)
    return job


def get_owned_job_fields(*, user: User, job_id: str) -> dict[str, Any]:
    """`get_owned_job` for the status poll: the columns `JobRead` shows, by name.

    The request clients send most, so one prepared SELECT on a pooled connection (on
    PostgreSQL an autocommit one: no BEGIN/COMMIT round trips) instead of an ORM load, which
    costs several times the query (session transaction, identity map, instance state).
    Ownership is the same rule as `get_owned_job`'s."""
    fields = _job_read_statement().first({"job_id": job_id})
    if fields is None or (fields["owner_id"] != user.id and not user.is_admin):
        raise JobNotFound(job_id)
    return fields


async def owned_job_fields_on_loop(*, user: User, job_id: str) -> dict[str, Any] | None:
    """`get_owned_job_fields` for an event loop, without a thread: SQLite at once, PostgreSQL
    awaited (`PreparedStatement.first_on_loop`). None if it cannot (a SQLite lock after all,
    another database); then ask `get_owned_job_fields` on a thread."""
    try:
        fields = await _job_read_statement().first_on_loop({"job_id": job_id})
    except WouldWait:
        return None
    if fields is None or (fields["owner_id"] != user.id and not user.is_admin):
        raise JobNotFound(job_id)
    return fields


def job_stub(fields: dict[str, Any]) -> ReportJob:
    """A transient `ReportJob` holding the columns of `fields`: for the checks that take a
    row (`app.jobs.hybrid`) when the job was read without the ORM."""
    return ReportJob(**{name: fields[name] for name in _STUB_COLUMNS})


_STUB_COLUMNS = ("id", "owner_id", "status", "backend", "queue", "progress_message")


@cache
def _job_read_columns() -> tuple[Column[Any], ...]:
    """The columns `JobRead` reads (its fields, `id` for `job_id`), in table order."""
    names = {"id", *JobRead.model_fields}
    columns = tuple(column for column in JOBS.c if column.key in names)
    assert set(_STUB_COLUMNS) <= {column.key for column in columns}
    return columns


@cache
def _job_read_statement() -> PreparedStatement:
    """Unpinged: the status poll is the request clients send most, and a ping per poll was
    a second round trip to PostgreSQL (a dropped connection costs the poll a retry)."""
    return PreparedStatement(
        select(*_job_read_columns()).where(JOBS.c.id == bindparam("job_id", type_=JOBS.c.id.type)),
        pinged=False,
    )


def get_linked_job(
    *, session: Session, settings: Settings, job_id: str, expires: int, signature: str
) -> ReportJob:
    """The job a signed download link names, if the link is genuine and not expired."""
    job = session.get(ReportJob, job_id)
    links.verify(
        settings,
        job_id=job_id,
        owner_id=job.owner_id if job is not None else -1,
        expires=expires,
        given=signature,
    )
    if job is None:  # pragma: no cover - a valid signature for a job since deleted
        raise JobNotFound(job_id)
    return job


def get_own_job(*, session: Session, user: User, job_id: str) -> ReportJob:
    """The job if `user` owns it, admins included: what a rerun may copy."""
    job = session.get(ReportJob, job_id)
    if job is None or job.owner_id != user.id:
        raise JobNotFound(job_id)
    return job


def owner_name(*, session: Session, user: User, job: ReportJob) -> str | None:
    """The name of the job's owner (the caller's own, or a lookup for an admin)."""
    return name_of_owner(session=session, user=user, owner_id=job.owner_id)


def name_of_owner(*, session: Session, user: User, owner_id: int) -> str | None:
    """`owner_name` by the owner's id."""
    if owner_id == user.id:
        return user.name
    owner = session.get(User, owner_id)
    return owner.name if owner is not None else None


TOTAL_CAP = 1000
"""A list's `total` is exact up to this many jobs; past it, `total_capped` says so. Counting
stops there, so a page costs the same for a user with 100 jobs or 100,000."""


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True)
class JobFieldsPage:
    items: list[dict[str, Any]]
    """Each job's columns that `JobRead` shows, by name."""
    total: int
    total_capped: bool
    owners: dict[int, str]


def list_job_fields(
    *,
    session: Session,
    user: User,
    status: str | None = None,
    job_type: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> JobFieldsPage:
    """The caller's jobs, newest first; an admin's list holds everyone's. A date without a
    zone is UTC; `created_after` is inclusive, `created_before` exclusive. The columns
    `JobRead` shows, not ORM instances (whose loading costs more than the query, per row)."""
    conditions = _conditions(user, status, job_type, created_after, created_before)
    counted = _count_upto_cap(session, conditions)
    page = _page(select(*_job_read_columns()), conditions, limit, offset)
    rows = [dict(row) for row in session.execute(page).mappings()]
    return JobFieldsPage(
        items=rows,
        total=min(counted, TOTAL_CAP),
        total_capped=counted > TOTAL_CAP,
        owners=_owner_names(session, user, {row["owner_id"] for row in rows}),
    )


def _conditions(
    user: User,
    status: str | None,
    job_type: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
) -> list[ColumnElement[bool]]:
    conditions = [] if user.is_admin else [ReportJob.owner_id == user.id]
    if created_after is not None:
        conditions.append(ReportJob.created_at >= _utc(created_after))
    if created_before is not None:
        conditions.append(ReportJob.created_at < _utc(created_before))
    if status:
        conditions.append(ReportJob.status == status)
    if job_type:
        conditions.append(ReportJob.job_type == job_type)
    return conditions


def _count_upto_cap(session: Session, conditions: list[ColumnElement[bool]]) -> int:
    """A bounded count: at most TOTAL_CAP + 1 index entries read, whatever the table holds."""
    capped = (
        select(literal(1)).select_from(ReportJob).where(*conditions).limit(TOTAL_CAP + 1)
    ).subquery()
    return session.scalar(select(func.count()).select_from(capped)) or 0


def _page(query: S_, conditions: list[ColumnElement[bool]], limit: int, offset: int) -> S_:
    """Newest first, ties by id descending: the order of the (owner_id, [status,]
    created_at, id) indexes read backwards, so the page comes off the index without a sort."""
    return (
        query.where(*conditions)
        .order_by(ReportJob.created_at.desc(), ReportJob.id.desc())
        .limit(limit)
        .offset(offset)
    )


def _owner_names(session: Session, user: User, ids: set[int]) -> dict[int, str]:
    """The user name of each owner: the caller's own without a query (all a non-admin's
    page holds), the others looked up."""
    names = {user.id: user.name} if user.id in ids else {}
    others = ids - names.keys()
    if others:
        found = session.execute(select(User.id, User.name).where(User.id.in_(others)))
        names.update(found.tuples().all())
    return names


def cancel_job(*, session: Session, job: ReportJob) -> ReportJob:
    """Cancel a job that has not finished. A running job sees it at its next progress call."""
    if job.status in FINAL_STATUSES:
        raise JobAlreadyFinished(f"Cannot cancel: job {job.id} already {job.status}.")
    moved = transition(
        session,
        job.id,
        source=LIVE_STATUSES,
        target=S.CANCELLED,
        finished_at=utcnow(),
        error="cancelled by user",
    )
    session.refresh(job)
    if not moved and job.status not in FINAL_STATUSES:  # pragma: no cover - lost a race twice
        raise JobAlreadyFinished(f"Cannot cancel: job {job.id} changed state while cancelling.")
    if not moved:
        raise JobAlreadyFinished(f"Cannot cancel: job {job.id} already {job.status}.")
    return job
