"""Writing new job rows, and the mark that a backend holds a job (the API and relay side)."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Insert, insert, update
from sqlalchemy.orm import Session

from app.db.base import new_id, utcnow
from app.db.clock import db_now
from app.jobs.models import ReportJob
from app.jobs.registry import kind_of
from app.jobs.states import JobStatus, check
from app.jobs.store.transitions import JOBS, transition
from app.users.models import User

S = JobStatus


def new_row(
    *,
    owner_id: int,
    job_type: str,
    params: dict[str, Any],
    max_attempts: int,
    queued_on: str | None = None,
    message: str = "",
) -> dict[str, Any]:
    """The column values of a new job.

    With `queued_on`, the row is born `queued` on that backend (pending -> queued in the same
    transaction, saving a round trip per job); if the publish then fails the caller moves it
    back to `pending`, and a publish lost in a crash is re-sent by the relay.
    """
    now = utcnow()
    webhook_url = params.get("webhook_url")
    row: dict[str, Any] = {
        "id": new_id(),
        "owner_id": owner_id,
        "job_type": job_type,
        "queue": kind_of(job_type).queue,
        "status": str(S.PENDING),
        "backend": None,
        "params": params,
        # The webhook pass's index holds only jobs whose first attempt is owed.
        "webhook_url": str(webhook_url) if webhook_url else None,
        "max_attempts": max_attempts,
        "attempts": 0,
        "history": [],
        "progress_percent": 0.0,
        "progress_message": message,
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


def insert_jobs(*, session: Session, rows: list[dict[str, Any]]) -> None:
    """`create_job` for the request path: prepared INSERTs, one `executemany` per shape of
    row (born queued or pending), no unit-of-work bookkeeping.

    `created_at` (and `queued_at` of a job born queued) come from the database's clock: the
    relay compares them with it to tell a lost publish from a slow one, whatever this host's
    clock says."""
    for born_queued in (True, False):
        shaped = [row for row in rows if (row["queued_at"] is not None) is born_queued]
        if shaped:
            params = shaped[0] if len(shaped) == 1 else shaped
            session.execute(_insert_statement(born_queued=born_queued), params)


@cache
def _insert_statement(*, born_queued: bool) -> Insert:
    stamps = {"created_at": db_now(), "updated_at": db_now()}
    if born_queued:
        stamps["queued_at"] = db_now()
    return insert(JOBS).values(**stamps)


def mark_queued(*, session: Session, job_id: str, backend: str) -> bool:
    """Record that `backend` has the job. From `pending` (first publish) or `retrying`."""
    return transition(
        session,
        job_id,
        source=[S.PENDING, S.RETRYING],
        target=S.QUEUED,
        backend=backend,
        queued_at=db_now(),  # the relay's lost-publish ages are by the database's clock
        progress_message="",  # no longer waiting for a slot, a broker or a retry
    )


def record_backend(*, session: Session, job_id: str, backend: str) -> None:
    """Name the backend of a job a worker claimed before its publish was marked (the claim
    moved it past `queued`); not a status change, so not a transition."""
    session.execute(
        update(JOBS).where(JOBS.c.id == job_id, JOBS.c.backend.is_(None)).values(backend=backend)
    )
