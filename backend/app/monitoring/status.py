"""What `celery_manager.py status` shows: one snapshot of the workers, the queues and the jobs
that need a look.

Two halves, gathered apart so that one failing leaves the other intact:

- the broker's (`status_broker`): the Celery workers that answer (and the RQ workers
  registered in Redis), the queues each consumes, and the messages each queue holds. Every
  call is bounded; a broker that does not answer is a line in the snapshot, never a hang.
- the database's: per queue the jobs waiting (`pending` or `queued`) and the oldest of them
  with its reason, `started` jobs whose heartbeat is older than JOB_HEARTBEAT_TIMEOUT_SECONDS
  (their worker is gone or stuck), `retrying` jobs and when they are due, and the failures of
  the last hour per kind with the latest error. Ages are by the database's clock (`db_now`),
  the one every process stamps these rows with.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.queues import QUEUES
from app.db.clock import db_now
from app.db.session import session_scope
from app.jobs.models import ReportJob
from app.jobs.states import JobStatus
from app.monitoring.status_broker import BrokerView, broker_view, why

log = logging.getLogger(__name__)
S = JobStatus

SHOWN = 10
"""Rows listed per section; the rest are counted."""
ERROR_CHARS = 160
FAILURE_WINDOW_SECONDS = 3600.0
WAITING = (S.PENDING, S.QUEUED)


@dataclass(frozen=True)
class WaitingJob:
    job_id: str
    job_type: str
    status: str
    backend: str | None
    age_seconds: float
    """Since it was submitted."""
    reason: str
    """Its progress message: why it waits (a quota, no backend, ...), often empty."""


@dataclass(frozen=True)
class QueueStatus:
    name: str
    workers: tuple[str, ...]
    messages: int | None
    """On the Celery broker; None when unknown (no broker, or unreachable)."""
    waiting: int
    """Rows `pending` or `queued` in the database."""
    oldest: WaitingJob | None
    no_consumer: bool | None
    """No Celery or RQ worker consumes it; None when a broker did not answer (or none is
    configured: the embedded executor takes every queue)."""


@dataclass(frozen=True)
class StuckJob:
    job_id: str
    job_type: str
    queue: str
    worker: str | None
    attempts: int
    seconds_since_beat: float


@dataclass(frozen=True)
class RetryingJob:
    job_id: str
    job_type: str
    queue: str
    attempts: int
    max_attempts: int
    next_attempt_at: datetime | None
    due_in_seconds: float | None
    """Negative: overdue."""
    error: str


@dataclass(frozen=True)
class Failures:
    job_type: str
    count: int
    latest_job_id: str
    latest_at: datetime | None
    latest_error: str


@dataclass(frozen=True)
class DatabaseView:
    now: datetime | None = None
    error: str | None = None
    """Why the database part is missing."""
    waiting: dict[str, tuple[int, WaitingJob | None]] = field(default_factory=dict)
    stuck: list[StuckJob] = field(default_factory=list)
    stuck_total: int = 0
    retrying: list[RetryingJob] = field(default_factory=list)
    retrying_total: int = 0
    failures: list[Failures] = field(default_factory=list)
    by_status: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class StatusSnapshot:
    broker: BrokerView
    database: DatabaseView
    queues: list[QueueStatus]
    heartbeat_timeout: float
    failure_window: float = FAILURE_WINDOW_SECONDS


def snapshot(settings: Settings, timeout: float = 2.0) -> StatusSnapshot:
    """Everything the status screen shows. A broker call that has not answered within
    `timeout` plus BROKER_PUBLISH_TIMEOUT_SECONDS plus 1 s is abandoned; a refused or timed
    out connection ends the broker's half at once (the usual case of a broker down)."""
    broker = broker_view(settings, timeout)
    database = database_view(settings.JOB_HEARTBEAT_TIMEOUT_SECONDS)
    return StatusSnapshot(
        broker=broker,
        database=database,
        queues=queue_statuses(broker, database),
        heartbeat_timeout=settings.JOB_HEARTBEAT_TIMEOUT_SECONDS,
    )


def queue_statuses(broker: BrokerView, database: DatabaseView) -> list[QueueStatus]:
    """The known queues, then any other a job row names."""
    names = [*QUEUES, *sorted(set(database.waiting) - set(QUEUES))]
    result = []
    for name in names:
        workers = tuple(w.name for w in broker.workers if name in w.queues)
        waiting, oldest = database.waiting.get(name, (0, None))
        result.append(
            QueueStatus(
                name=name,
                workers=workers,
                messages=broker.messages.get(name) if broker.up else None,
                waiting=waiting,
                oldest=oldest,
                no_consumer=(not workers) if broker.consumers_known else None,
            )
        )
    return result


# -- the database's half --------------------------------------------------------------------


def shorten(text: str | None, limit: int = ERROR_CHARS) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _seconds(now: datetime, then: datetime | None) -> float:
    return (now - then).total_seconds() if then is not None else 0.0


def database_view(heartbeat_timeout: float) -> DatabaseView:
    try:
        with session_scope(durable=False) as session:
            return _read(session, heartbeat_timeout)
    except SQLAlchemyError as exc:
        log.debug("database unreachable", exc_info=True)
        return DatabaseView(error=why(exc))


def _read(session: Session, heartbeat_timeout: float) -> DatabaseView:
    now = session.scalar(select(db_now()))
    assert now is not None
    stale: ColumnElement[bool] = ReportJob.status == S.STARTED
    stale &= or_(
        ReportJob.heartbeat_at < db_now(-heartbeat_timeout),
        ReportJob.heartbeat_at.is_(None) & (ReportJob.started_at < db_now(-heartbeat_timeout)),
    )
    stuck = session.scalars(
        select(ReportJob).where(stale).order_by(ReportJob.heartbeat_at).limit(SHOWN)
    ).all()
    retrying = session.scalars(
        select(ReportJob)
        .where(ReportJob.status == S.RETRYING)
        .order_by(ReportJob.next_attempt_at)
        .limit(SHOWN)
    ).all()
    by_status = dict(
        session.execute(select(ReportJob.status, func.count()).group_by(ReportJob.status))
        .tuples()
        .all()
    )
    return DatabaseView(
        now=now,
        waiting=_waiting(session, now),
        stuck=[
            StuckJob(
                job_id=job.id,
                job_type=job.job_type,
                queue=job.queue,
                worker=job.worker,
                attempts=job.attempts,
                seconds_since_beat=_seconds(now, job.heartbeat_at or job.started_at),
            )
            for job in stuck
        ],
        stuck_total=session.scalar(select(func.count()).select_from(ReportJob).where(stale)) or 0,
        retrying=[
            RetryingJob(
                job_id=job.id,
                job_type=job.job_type,
                queue=job.queue,
                attempts=job.attempts,
                max_attempts=job.max_attempts,
                next_attempt_at=job.next_attempt_at,
                due_in_seconds=(
                    -_seconds(now, job.next_attempt_at) if job.next_attempt_at else None
                ),
                error=shorten(job.error),
            )
            for job in retrying
        ],
        retrying_total=by_status.get(S.RETRYING, 0),
        failures=_failures(session),
        by_status=by_status,
    )


def _waiting(session: Session, now: datetime) -> dict[str, tuple[int, WaitingJob | None]]:
    waiting = ReportJob.status.in_(WAITING)
    counts = (
        session.execute(
            select(ReportJob.queue, func.count()).where(waiting).group_by(ReportJob.queue)
        )
        .tuples()
        .all()
    )
    result: dict[str, tuple[int, WaitingJob | None]] = {}
    for queue, count in counts:
        job = session.scalars(
            select(ReportJob)
            .where(waiting, ReportJob.queue == queue)
            .order_by(ReportJob.created_at, ReportJob.id)
            .limit(1)
        ).first()
        oldest = None
        if job is not None:
            oldest = WaitingJob(
                job_id=job.id,
                job_type=job.job_type,
                status=job.status,
                backend=job.backend,
                age_seconds=_seconds(now, job.created_at),
                reason=shorten(job.progress_message),
            )
        result[queue] = (count, oldest)
    return result


def _failures(session: Session) -> list[Failures]:
    recent = (ReportJob.status == S.FAILED) & (
        ReportJob.finished_at >= db_now(-FAILURE_WINDOW_SECONDS)
    )
    groups = (
        session.execute(
            select(ReportJob.job_type, func.count())
            .where(recent)
            .group_by(ReportJob.job_type)
            .order_by(func.count().desc(), ReportJob.job_type)
        )
        .tuples()
        .all()
    )
    result = []
    for job_type, count in groups:
        latest = session.scalars(
            select(ReportJob)
            .where(recent, ReportJob.job_type == job_type)
            .order_by(ReportJob.finished_at.desc(), ReportJob.id)
            .limit(1)
        ).first()
        if latest is None:  # gone between the two reads (retention)
            continue
        result.append(
            Failures(
                job_type=job_type,
                count=count,
                latest_job_id=latest.id,
                latest_at=latest.finished_at,
                latest_error=shorten(latest.error),
            )
        )
    return result
