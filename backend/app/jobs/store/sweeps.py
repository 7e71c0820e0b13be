"""The queries of the periodic duties: the reaper, the outbox relay, the embedded executor's
poll and the cleanup. Each reads a bounded batch, oldest first.

Ages are seconds measured by the database's clock (`db_now`), never a host's: the rows were
stamped by other processes on other hosts, whose clocks drift.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import (
    ColumnClause,
    ColumnElement,
    Integer,
    Select,
    String,
    bindparam,
    func,
    literal_column,
    or_,
    select,
)
from sqlalchemy.orm import Session

from app.db.clock import db_now
from app.jobs.models import ReportJob
from app.jobs.states import FINAL_STATUSES, JobStatus
from app.jobs.store.transitions import transition

S = JobStatus


def requeue_stale(*, session: Session, stale_after: float) -> tuple[list[str], list[str]]:
    """The reaper: `started` jobs whose worker stopped heart-beating `stale_after` s ago.

    Returns (requeued, failed): a job that used up its attempts fails (a poison job that keeps
    killing its worker must not loop forever); the others go back to `queued` on their backend.
    """
    found = session.execute(
        select(ReportJob, db_now()).where(
            ReportJob.status == S.STARTED,
            or_(ReportJob.heartbeat_at.is_(None), ReportJob.heartbeat_at < db_now(-stale_after)),
        )
    ).all()
    requeued: list[str] = []
    failed: list[str] = []
    for job, now in found:
        guard = [ReportJob.attempts == job.attempts, ReportJob.heartbeat_at == job.heartbeat_at]
        lost = {
            "attempt": job.attempts,
            "started_at": job.started_at.isoformat() if job.started_at else None,
            "ended_at": now.isoformat(),
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
                finished_at=db_now(),
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
            # A broker job's re-publish restarts the relay's lost-publish clock; an embedded
            # job keeps its place, since the poll takes jobs by `queued_at`.
            queued_at=job.queued_at if job.backend == "local" else db_now(),
            progress_message="worker lost; re-queued",
            history=history,
        ):
            requeued.append(job.id)
    session.commit()
    return requeued, failed


def pending_by_turn(
    *,
    session: Session,
    older_than: float,
    per_owner: int | None,
    owner_id: int | None = None,
    job_types: Collection[str] | None = None,
    limit: int = 500,
) -> list[tuple[str, int]]:
    """(id, owner) of jobs waiting in the outbox for over `older_than` seconds, in turns: every
    owner's oldest first, then every owner's second, and so on (at most `per_owner` each).

    In turns rather than oldest first, so that one owner's backlog cannot fill the batch and
    hide another owner's job behind it."""
    conditions = [ReportJob.status == S.PENDING]
    if older_than > 0:
        conditions.append(ReportJob.created_at < db_now(-older_than))
    if owner_id is not None:
        conditions.append(ReportJob.owner_id == owner_id)
    if job_types is not None:
        conditions.append(ReportJob.job_type.in_(list(job_types)))
    turn = (
        func.row_number()
        .over(partition_by=ReportJob.owner_id, order_by=(ReportJob.created_at, ReportJob.id))
        .label("turn")
    )
    waiting = (
        select(ReportJob.id, ReportJob.owner_id, ReportJob.created_at, turn)
        .where(*conditions)
        .subquery()
    )
    query = select(waiting.c.id, waiting.c.owner_id)
    if per_owner is not None:
        query = query.where(waiting.c.turn <= per_owner)
    query = query.order_by(waiting.c.turn, waiting.c.created_at).limit(limit)
    return [(job_id, owner) for job_id, owner in session.execute(query).tuples()]


def active_counts(
    *, session: Session, owner_ids: Collection[int], statuses: Collection[str]
) -> dict[int, int]:
    """How many jobs in `statuses` each of `owner_ids` has."""
    if not owner_ids:
        return {}
    rows = session.execute(
        select(ReportJob.owner_id, func.count())
        .where(ReportJob.owner_id.in_(list(owner_ids)), ReportJob.status.in_(list(statuses)))
        .group_by(ReportJob.owner_id)
    ).tuples()
    return dict(rows.all())


def queued_on_brokers(
    *, session: Session, older_than: float, expired_after: float, limit: int = 500
) -> list[tuple[str, str, bool]]:
    """(id, backend, expired) of jobs `queued` on Celery or RQ for over `older_than` seconds
    and never started, oldest first: the relay's candidates for a lost publish (a crash
    between commit and publish, or a broker restarted without its data). `expired`: queued
    for over `expired_after` seconds too."""
    rows = session.execute(
        select(ReportJob.id, ReportJob.backend, ReportJob.queued_at < db_now(-expired_after))
        .where(
            ReportJob.status == S.QUEUED,
            ReportJob.backend.in_(["celery", "rq"]),
            ReportJob.queued_at < db_now(-older_than),
        )
        .order_by(ReportJob.queued_at)
        .limit(limit)
    ).all()
    return [(job_id, str(backend), bool(expired)) for job_id, backend, expired in rows]


def overdue_retries(*, session: Session, overdue_after: float, limit: int = 500) -> list[str]:
    """Retrying jobs whose backoff ended over `overdue_after` seconds ago and that no worker
    picked up."""
    return list(
        session.scalars(
            select(ReportJob.id)
            .where(
                ReportJob.status == S.RETRYING,
                ReportJob.next_attempt_at < db_now(-overdue_after),
            )
            .order_by(ReportJob.next_attempt_at)
            .limit(limit)
        ).all()
    )


def runnable_local(*, session: Session, limit: int) -> list[str]:
    """Jobs the embedded executor should run now: queued on it, or retrying and due.

    In the order they were handed to it (`queued_at`), like a broker's queue: a job held back
    for its owner's turn (`app.jobs.fairness`) and released later goes behind the jobs other
    users queued meanwhile, though it was created before them.

    Two seeks of at most `limit` rows each, merged: the queued jobs in order off the partial
    index `ix_report_jobs_local_queue` (only this executor's jobs), and the retries due off
    `(status, next_attempt_at)`. One query with an OR sorted every queued job on each poll,
    and the executor polls after every job: a backlog of thousands cost a millisecond a job.

    On PostgreSQL `FOR UPDATE SKIP LOCKED`: API hosts sharing the database that poll at the
    same moment take different rows instead of all racing for the oldest (the claim's
    compare-and-set still decides who runs a job). The caller commits at once, releasing
    the locks. SQLite has no row locks (the clause is not rendered there), and one file is
    one host.
    """
    found = [
        *session.execute(_local_queued(), {"limit": limit}).tuples(),
        *session.execute(_local_due_retries(), {"limit": limit}).tuples(),
    ]
    found.sort(key=lambda row: (row[1] or row[2], row[2]))
    return [job_id for job_id, _, _ in found[:limit]]


LOCAL: ColumnClause[str] = literal_column("'local'", String)
"""Written into the SQL, not bound: a partial index serves a query only if the query's own
text implies the index's condition (`backend = 'local'`), on SQLite and PostgreSQL alike."""


def _next_local(*conditions: ColumnElement[bool]) -> Select[str, datetime | None, datetime]:
    return (
        select(ReportJob.id, ReportJob.queued_at, ReportJob.created_at)
        .where(ReportJob.backend == LOCAL, *conditions)
        .order_by(ReportJob.queued_at, ReportJob.created_at)
        .limit(bindparam("limit", type_=Integer))
        .with_for_update(skip_locked=True)
    )


@cache
def _local_queued() -> Select[str, datetime | None, datetime]:
    return _next_local(ReportJob.status == S.QUEUED)


@cache
def _local_due_retries() -> Select[str, datetime | None, datetime]:
    return _next_local(ReportJob.status == S.RETRYING, ReportJob.next_attempt_at <= db_now())


def old_finished(
    *, session: Session, older_than: timedelta, limit: int = 1000
) -> list[tuple[str, str]]:
    """(id, job_type) of finished jobs created over `older_than` ago: what cleanup deletes.

    Unordered, so the scan of `(status, created_at)` stops at `limit`; only the two columns
    the deletion needs, not a whole row (params, result, history) per job."""
    rows = session.execute(
        select(ReportJob.id, ReportJob.job_type)
        .where(ReportJob.status.in_([str(s) for s in FINAL_STATUSES]))
        .where(ReportJob.created_at < db_now(-older_than.total_seconds()))
        .limit(limit)
    ).tuples()
    return list(rows.all())
