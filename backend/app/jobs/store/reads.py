"""What the API reads and changes on behalf of a caller: one job, a page of jobs, a cancel.

Ownership is checked here, once: another user's job is reported exactly like a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import ConflictError, NotFoundError
from app.db.base import utcnow
from app.jobs import links
from app.jobs.models import ReportJob
from app.jobs.states import FINAL_STATUSES, LIVE_STATUSES, JobStatus
from app.jobs.store.transitions import transition
from app.users.models import User

S = JobStatus


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
    if job.owner_id == user.id:
        return user.name
    owner = session.get(User, job.owner_id)
    return owner.name if owner is not None else None


TOTAL_CAP = 1000
"""A list's `total` is exact up to this many jobs; past it, `total_capped` says so. Counting
stops there, so a page costs the same for a user with 100 jobs or 100,000."""


@dataclass(frozen=True)
class JobPage:
    items: list[ReportJob]
    total: int
    total_capped: bool = False
    owners: dict[int, str] = field(default_factory=dict)
    """The user name of each owner on the page."""


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def list_jobs(
    *,
    session: Session,
    user: User,
    status: str | None = None,
    job_type: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    limit: int = 50,
    offset: int = 0,
) -> JobPage:
    """The caller's jobs, newest first; an admin's list holds everyone's. A date without a
    zone is UTC; `created_after` is inclusive, `created_before` exclusive."""
    conditions = [] if user.is_admin else [ReportJob.owner_id == user.id]
    if created_after is not None:
        conditions.append(ReportJob.created_at >= _utc(created_after))
    if created_before is not None:
        conditions.append(ReportJob.created_at < _utc(created_before))
    if status:
        conditions.append(ReportJob.status == status)
    if job_type:
        conditions.append(ReportJob.job_type == job_type)
    # A bounded count: at most TOTAL_CAP + 1 index entries read, whatever the table holds.
    capped = (
        select(literal(1)).select_from(ReportJob).where(*conditions).limit(TOTAL_CAP + 1)
    ).subquery()
    counted = session.scalar(select(func.count()).select_from(capped)) or 0
    # Newest first, ties by id descending: the order of the (owner_id, [status,] created_at,
    # id) indexes read backwards, so the page comes off the index without a sort.
    rows = session.scalars(
        select(ReportJob)
        .where(*conditions)
        .order_by(ReportJob.created_at.desc(), ReportJob.id.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    ids = {job.owner_id for job in rows}
    owners = (
        dict(session.execute(select(User.id, User.name).where(User.id.in_(ids))).tuples().all())
        if ids
        else {}
    )
    return JobPage(
        items=list(rows),
        total=min(counted, TOTAL_CAP),
        total_capped=counted > TOTAL_CAP,
        owners=owners,
    )


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
