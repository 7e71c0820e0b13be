"""The job state machine: every status change goes through `transition`, nowhere else.

A transition is a compare-and-set UPDATE (`WHERE status IN (...)`), so two processes that race
on one job cannot both win: a cancelled job is never completed, a finished job never re-run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Row, Table, Update, update
from sqlalchemy.orm import Session

from app.models import JobStatus, ReportJob

S = JobStatus
# Table-level (Core) statements: a status change is hot-path work, and the ORM's bulk-update
# machinery costs more than the UPDATE itself.
JOBS = cast(Table, ReportJob.__table__)

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    # A worker may claim a job whose "queued" mark it overtook (publish, then mark).
    S.PENDING: frozenset({S.QUEUED, S.STARTED, S.CANCELLED, S.FAILED}),
    # queued -> queued is a re-publish (the reaper's, or a move to a fallback backend).
    S.QUEUED: frozenset({S.QUEUED, S.STARTED, S.PENDING, S.CANCELLED, S.FAILED}),
    # started -> started is a takeover of a job whose worker stopped heart-beating;
    # started -> queued is the reaper handing it back to its backend.
    S.STARTED: frozenset({S.COMPLETED, S.FAILED, S.RETRYING, S.CANCELLED, S.QUEUED, S.STARTED}),
    S.RETRYING: frozenset({S.QUEUED, S.STARTED, S.CANCELLED, S.FAILED}),
    S.COMPLETED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}


class IllegalTransition(RuntimeError):
    """A code path asked for a move the state machine forbids: a bug, not a user error."""


def check(source: JobStatus, target: JobStatus) -> None:
    if target not in ALLOWED[source]:
        raise IllegalTransition(f"{source} -> {target} is not a legal job transition")


def transition(
    session: Session,
    job_id: str,
    *,
    source: Iterable[JobStatus],
    target: JobStatus,
    where: Iterable[Any] = (),
    **values: Any,
) -> bool:
    """Move `job_id` from one of `source` to `target` if it is still there; True if it moved.

    `where` adds conditions (e.g. the attempt number the caller owns); `values` sets columns.
    """
    result = session.execute(_update(job_id, source, target, where, values))
    return bool(getattr(result, "rowcount", 0) == 1)


def transition_returning(
    session: Session,
    job_id: str,
    *,
    source: Iterable[JobStatus],
    target: JobStatus,
    returning: Sequence[Any],
    where: Iterable[Any] = (),
    **values: Any,
) -> Row[Any] | None:
    """`transition` in one round trip that also reads back `returning` (None if it lost)."""
    stmt = _update(job_id, source, target, where, values).returning(*returning)
    return session.execute(stmt).first()


def _update(
    job_id: str,
    source: Iterable[JobStatus],
    target: JobStatus,
    where: Iterable[Any],
    values: dict[str, Any],
) -> Update:
    sources = [JobStatus(s) for s in source]
    for s in sources:
        check(s, target)
    return (
        update(JOBS)
        .where(JOBS.c.id == job_id, JOBS.c.status.in_([str(s) for s in sources]), *where)
        .values(status=str(target), **values)
    )
