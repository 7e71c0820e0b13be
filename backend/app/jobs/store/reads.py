"""What the API reads and changes on behalf of a caller: one job, a page of jobs, a cancel.

Ownership is checked here, once: another user's job is reported exactly like a missing one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
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


@dataclass(frozen=True)
class JobPage:
    items: list[ReportJob]
    total: int


def list_jobs(
    *,
    session: Session,
    user: User,
    status: str | None = None,
    job_type: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> JobPage:
    """The caller's jobs, newest first."""
    conditions = [ReportJob.owner_id == user.id]
    if status:
        conditions.append(ReportJob.status == status)
    if job_type:
        conditions.append(ReportJob.job_type == job_type)
    total = session.scalar(select(func.count()).select_from(ReportJob).where(*conditions)) or 0
    rows = session.scalars(
        select(ReportJob)
        .where(*conditions)
        .order_by(ReportJob.created_at.desc(), ReportJob.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return JobPage(items=list(rows), total=total)


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
