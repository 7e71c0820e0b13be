"""What a worker does to the row of the job it runs: claim one attempt, then finish it.

Both are single prepared statements on the hot path of every job, and both ride out a
dropped database connection (`faults.retry_db`): a blip must not cost the job an attempt.
An attempt that lost its job reads the row once (`state`) and may add its own entry to the
history (`add_history`); neither is a status change.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Float, bindparam, literal, or_, select, update
from sqlalchemy.orm import Session

from app.db.clock import db_now
from app.db.json_list import json_append
from app.db.prepared import PreparedStatement
from app.db.session import session_scope
from app.jobs.faults import retry_db
from app.jobs.states import JobStatus
from app.jobs.store.transitions import JOBS, owned_transition, prepare_transition, transition

S = JobStatus


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


def claim(*, job_id: str, worker: str, stale_after: float) -> Claim | None:
    """Take the job for one attempt, or None if someone else has it or it is finished.

    One UPDATE ... RETURNING, committed on its own: a `started` job whose heartbeat is more
    than `stale_after` seconds old is taken over (its worker died); a `retrying` job only once
    its backoff is over (an early redelivery is refused, not run early). Both by the
    database's clock, which also stamps `started_at` and is returned: hosts' clocks drift.
    """
    params = {"p_id": job_id, "p_stale": -float(stale_after), "p_worker": worker}
    row = retry_db(lambda: _claim_statement().returning(params), what=f"claim of job {job_id}")
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
        started_at=row["started_at"],
        worker=worker,
    )


@cache
def _claim_statement() -> PreparedStatement:
    """Built once: claiming is the hot path of every job."""
    now, stale = db_now(), db_now(bindparam("p_stale", type_=Float()))
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
        JOBS.c.started_at,
    )
    return PreparedStatement(statement)


def finish(
    *, job_id: str, attempt: int, target: JobStatus, session: Session | None = None, **values: Any
) -> bool:
    """End the attempt `attempt` owns: completed, failed or retrying. False if it lost the job.

    Committed on its own (retried after a dropped connection), or with `session` as part of
    the caller's unit of work (e.g. the completion together with the rows it creates), which
    the caller retries as a whole."""
    if session is None:
        return retry_db(
            lambda: owned_transition(
                job_id, source=[S.STARTED], target=target, attempt=attempt, **values
            ),
            what=f"end of job {job_id} attempt {attempt}",
        )
    return transition(
        session,
        job_id,
        source=[S.STARTED],
        target=target,
        where=[JOBS.c.attempts == attempt],
        **values,
    )


@dataclass(frozen=True)
class RowState:
    status: JobStatus
    attempts: int


def state(job_id: str) -> RowState | None:
    """The row's status and attempt count now (None if the row is gone)."""

    def read() -> RowState | None:
        with session_scope() as session:
            row = session.execute(
                select(JOBS.c.status, JOBS.c.attempts).where(JOBS.c.id == job_id)
            ).first()
        return None if row is None else RowState(JobStatus(row.status), int(row.attempts))

    return retry_db(read, what=f"state of job {job_id}")


def add_history(job_id: str, entry: dict[str, Any]) -> None:
    """Append `entry` to the job's history whatever its status (an attempt that was taken
    over says so); appended in SQL, so the live attempt's own entry is never lost."""

    def write() -> None:
        with session_scope() as session:
            session.execute(
                update(JOBS)
                .where(JOBS.c.id == job_id)
                .values(history=json_append(JOBS.c.history, literal(entry, JOBS.c.history.type)))
            )

    retry_db(write, what=f"history of job {job_id}")
