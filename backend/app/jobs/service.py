"""The job lifecycle in the database: create, claim, finish, cancel, list.

Independent of any queue library: Celery, RQ and the local executor all drive jobs through
these functions (via `runner.run_job`), so statuses mean the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Insert, bindparam, func, insert, or_, select
from sqlalchemy.orm import Session

from app.core.prepared import PreparedStatement
from app.jobs.registry import kind_of
from app.jobs.states import JOBS, check, owned_transition, prepare_transition, transition
from app.models import FINAL_STATUSES, JobStatus, ReportJob, User, UTCDateTime, new_id, utcnow

S = JobStatus
LIVE_STATUSES = (S.PENDING, S.QUEUED, S.STARTED, S.RETRYING)


class JobNotFound(LookupError):
    """No such job for this caller (also raised for other users' jobs: no existence oracle)."""


class JobAlreadyFinished(RuntimeError):
    pass


def new_row(
    *,
    owner_id: int,
    job_type: str,
    params: dict[str, Any],
    max_attempts: int,
    queued_on: str | None = None,
) -> dict[str, Any]:
    """The column values of a new job.

    With `queued_on`, the row is born `queued` on that backend (pending -> queued in the same
    transaction, saving a round trip per job); if the publish then fails the caller moves it
    back to `pending`, and a publish lost in a crash is re-sent by the relay.
    """
    now = utcnow()
    row: dict[str, Any] = {
        "id": new_id(),
        "owner_id": owner_id,
        "job_type": job_type,
        "queue": kind_of(job_type).queue,
        "status": str(S.PENDING),
        "backend": None,
        "params": params,
        "max_attempts": max_attempts,
        "attempts": 0,
        "history": [],
        "progress_percent": 0.0,
        "progress_message": "",
        "created_at": now,
        "queued_at": None,
    }
    if queued_on is not None:
        check(S.PENDING, S.QUEUED)
        row.update(status=str(S.QUEUED), backend=queued_on, queued_at=now)
    return row


def create_job(
    *,
    session: Session,
    owner: User,
    job_type: str,
    params: dict[str, Any],
    max_attempts: int,
    queued_on: str | None = None,
) -> ReportJob:
    """Add the row as an ORM object; the caller commits, then publishes."""
    job = ReportJob(
        **new_row(
            owner_id=owner.id,
            job_type=job_type,
            params=params,
            max_attempts=max_attempts,
            queued_on=queued_on,
        )
    )
    session.add(job)
    return job


def insert_job(*, session: Session, row: dict[str, Any]) -> None:
    """`create_job` for the request path: one prepared INSERT, no unit-of-work bookkeeping."""
    session.execute(_insert_statement(), row)


@cache
def _insert_statement() -> Insert:
    return insert(JOBS)


def get_owned_job(*, session: Session, user: User, job_id: str) -> ReportJob:
    """The job if `user` may see it; other users' jobs look exactly like missing ones."""
    job = session.get(ReportJob, job_id)
    if job is None or (job.owner_id != user.id and not user.is_admin):
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
        raise JobAlreadyFinished(f"job {job.id} already {job.status}")
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
        raise JobAlreadyFinished(f"job {job.id} changed state while cancelling")
    if not moved:
        raise JobAlreadyFinished(f"job {job.id} already {job.status}")
    return job


def mark_queued(*, session: Session, job_id: str, backend: str) -> bool:
    """Record that `backend` has the job. From `pending` (first publish) or `retrying`."""
    return transition(
        session,
        job_id,
        source=[S.PENDING, S.RETRYING],
        target=S.QUEUED,
        backend=backend,
        queued_at=utcnow(),
    )


@dataclass(frozen=True)
class Claim:
    """What a worker needs of the job it just took, read in the same statement."""

    job_id: str
    job_type: str
    queue: str
    params: dict[str, Any]
    owner_id: int
    attempts: int
    max_attempts: int
    history: list[dict[str, Any]]
    queued_at: datetime | None
    started_at: datetime
    worker: str


def claim(*, job_id: str, worker: str, stale_before: datetime) -> Claim | None:
    """Take the job for one attempt, or None if someone else has it or it is finished.

    One UPDATE ... RETURNING, committed on its own: a `started` job whose heartbeat is older
    than `stale_before` is taken over (its worker died); a `retrying` job only once its
    backoff is over (an early redelivery is refused, not run early).
    """
    now = utcnow()
    row = _claim_statement().returning(
        {"p_id": job_id, "p_now": now, "p_stale": stale_before, "p_worker": worker}
    )
    if row is None:
        return None
    return Claim(
        job_id=job_id,
        job_type=row["job_type"],
        queue=row["queue"],
        params=dict(row["params"] or {}),
        owner_id=row["owner_id"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        history=list(row["history"] or []),
        queued_at=row["queued_at"],  # aware: the column type converts it
        started_at=now,
        worker=worker,
    )


@cache
def _claim_statement() -> PreparedStatement:
    """Built once: claiming is the hot path of every job."""
    now, stale = bindparam("p_now", type_=UTCDateTime()), bindparam("p_stale", type_=UTCDateTime())
    statement = prepare_transition(
        source=[S.PENDING, S.QUEUED, S.RETRYING, S.STARTED],
        target=S.STARTED,
        where=[
            or_(
                JOBS.c.status != S.STARTED,
                JOBS.c.heartbeat_at.is_(None),
                JOBS.c.heartbeat_at < stale,
            ),
            or_(
                JOBS.c.status != S.RETRYING,
                JOBS.c.next_attempt_at.is_(None),
                JOBS.c.next_attempt_at <= now,
            ),
        ],
        values={
            "attempts": JOBS.c.attempts + 1,
            "started_at": now,
            "heartbeat_at": now,
            "next_attempt_at": None,
            "worker": bindparam("p_worker"),
            "progress_percent": 0.0,
            "progress_message": "started",
        },
    ).returning(
        JOBS.c.job_type,
        JOBS.c.queue,
        JOBS.c.params,
        JOBS.c.owner_id,
        JOBS.c.attempts,
        JOBS.c.max_attempts,
        JOBS.c.history,
        JOBS.c.queued_at,
    )
    return PreparedStatement(statement)


def finish(
    *, job_id: str, attempt: int, target: JobStatus, session: Session | None = None, **values: Any
) -> bool:
    """End the attempt `attempt` owns: completed, failed or retrying. False if it lost the job.

    Committed on its own, or with `session` as part of the caller's unit of work (e.g. the
    completion together with the rows it creates)."""
    if session is None:
        return owned_transition(
            job_id, source=[S.STARTED], target=target, attempt=attempt, **values
        )
    return transition(
        session,
        job_id,
        source=[S.STARTED],
        target=target,
        where=[JOBS.c.attempts == attempt],
        **values,
    )


def requeue_stale(*, session: Session, stale_before: datetime) -> tuple[list[str], list[str]]:
    """The reaper: `started` jobs whose worker stopped heart-beating.

    Returns (requeued, failed): a job that used up its attempts fails (a poison job that keeps
    killing its worker must not loop forever); the others go back to `queued` on their backend.
    """
    rows = session.scalars(
        select(ReportJob).where(
            ReportJob.status == S.STARTED,
            or_(ReportJob.heartbeat_at.is_(None), ReportJob.heartbeat_at < stale_before),
        )
    ).all()
    requeued: list[str] = []
    failed: list[str] = []
    for job in rows:
        guard = [ReportJob.attempts == job.attempts, ReportJob.heartbeat_at == job.heartbeat_at]
        lost = {
            "attempt": job.attempts,
            "started_at": job.started_at.isoformat() if job.started_at else None,
            "ended_at": utcnow().isoformat(),
            "outcome": "lost",
            "error": "worker stopped heart-beating",
            "worker": job.worker,
        }
        history = [*(job.history or []), lost]
        if job.attempts >= job.max_attempts:
            if transition(
                session,
                job.id,
                source=[S.STARTED],
                target=S.FAILED,
                where=guard,
                finished_at=utcnow(),
                error=(
                    f"worker lost during attempt {job.attempts} of {job.max_attempts}; "
                    "gave up (the job may crash its worker)"
                ),
                history=history,
            ):
                failed.append(job.id)
        elif transition(
            session,
            job.id,
            source=[S.STARTED],
            target=S.QUEUED,
            where=guard,
            queued_at=utcnow(),
            progress_message="worker lost; re-queued",
            history=history,
        ):
            requeued.append(job.id)
    session.commit()
    return requeued, failed


def pending_for_relay(*, session: Session, older_than: datetime, limit: int = 500) -> list[str]:
    """Jobs no backend took yet (the outbox), oldest first."""
    return list(
        session.scalars(
            select(ReportJob.id)
            .where(ReportJob.status == S.PENDING, ReportJob.created_at < older_than)
            .order_by(ReportJob.created_at)
            .limit(limit)
        ).all()
    )


def queued_on_brokers(
    *, session: Session, queued_before: datetime, limit: int = 500
) -> list[tuple[str, str, datetime]]:
    """(id, backend, queued_at) of jobs `queued` on Celery or RQ before `queued_before` and
    never started, oldest first: the relay's candidates for a lost publish (a crash between
    commit and publish, or a broker restarted without its data)."""
    rows = session.execute(
        select(ReportJob.id, ReportJob.backend, ReportJob.queued_at)
        .where(
            ReportJob.status == S.QUEUED,
            ReportJob.backend.in_(["celery", "rq"]),
            ReportJob.queued_at < queued_before,
        )
        .order_by(ReportJob.queued_at)
        .limit(limit)
    ).all()
    return [(job_id, str(backend), at) for job_id, backend, at in rows if at is not None]


def overdue_retries(*, session: Session, due_before: datetime, limit: int = 500) -> list[str]:
    """Retrying jobs whose backoff ended a while ago and that no worker picked up."""
    return list(
        session.scalars(
            select(ReportJob.id)
            .where(ReportJob.status == S.RETRYING, ReportJob.next_attempt_at < due_before)
            .order_by(ReportJob.next_attempt_at)
            .limit(limit)
        ).all()
    )


def runnable_local(*, session: Session, limit: int) -> list[str]:
    """Jobs the embedded executor should run now: queued on it, or retrying and due."""
    now = utcnow()
    return list(
        session.scalars(
            select(ReportJob.id)
            .where(
                ReportJob.backend == "local",
                or_(
                    ReportJob.status == S.QUEUED,
                    (ReportJob.status == S.RETRYING) & (ReportJob.next_attempt_at <= now),
                ),
            )
            .order_by(ReportJob.created_at)
            .limit(limit)
        ).all()
    )


def old_finished_jobs(
    *, session: Session, older_than: timedelta, limit: int = 1000
) -> list[ReportJob]:
    cutoff = utcnow() - older_than
    return list(
        session.scalars(
            select(ReportJob)
            .where(ReportJob.status.in_([str(s) for s in FINAL_STATUSES]))
            .where(ReportJob.created_at < cutoff)
            .limit(limit)
        ).all()
    )
