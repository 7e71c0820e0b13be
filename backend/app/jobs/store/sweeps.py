"""The queries of the periodic duties: the reaper, the outbox relay, the embedded executor's
poll and the cleanup. Each reads a bounded batch, oldest first.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.jobs.models import ReportJob
from app.jobs.states import FINAL_STATUSES, JobStatus
from app.jobs.store.transitions import transition

S = JobStatus


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
