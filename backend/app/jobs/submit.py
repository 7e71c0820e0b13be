"""Accepting a job from the API: one committed row, then a bounded hand-over. Never blocks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.core import metrics
from app.core.config import Settings, get_settings
from app.core.errors import DomainError
from app.jobs import routing
from app.jobs.admission import Admission, BatchAdmission
from app.jobs.dispatch import Dispatcher, get_dispatcher
from app.jobs.fairness import held_message
from app.jobs.registry import JobKind, kind_of
from app.jobs.states import JobStatus
from app.jobs.store import rows
from app.users.models import User

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Accepted:
    """A job that now exists: `status` is `queued` on `backend`, or `pending` in the outbox."""

    job_id: str
    status: str
    backend: str | None
    queue: str


@dataclass(frozen=True)
class JobOrder:
    """One submission: who asks for which job, with what parameters."""

    owner: User
    job_type: str
    params: dict[str, Any]


@dataclass(frozen=True)
class _Staged:
    row: dict[str, Any]
    kind: JobKind
    target: str | None


def accept_job(*, session: Session, owner: User, job_type: str, params: dict[str, Any]) -> Accepted:
    """Create the job and try to queue it. If no backend takes it, or its owner already has
    `QUOTA_ACTIVE_JOBS` jobs with the workers, it stays `pending` and is published later (the
    relay, or the worker that ends one of the owner's jobs): either way the caller gets its
    id at once (HTTP 202). Over a quota, `admission.QuotaExceeded` (HTTP 429)."""
    _statements_commit_alone(session)
    (outcome,) = accept_jobs(session=session, orders=[JobOrder(owner, job_type, params)])
    if isinstance(outcome, Exception):
        raise outcome
    return outcome


def accept_jobs(*, session: Session, orders: list[JobOrder]) -> list[Accepted | Exception]:
    """`accept_job` for several submissions in one transaction: one INSERT of all the rows
    admitted, one commit, then each publish. Each outcome is its `Accepted`, or the error
    that refused it (a quota, no backend for its kind) or that its publish raised after the
    commit; a database error raises for all, and nothing is written.

    Commits only if a row was written: a refused submission leaves the session's own work
    (a schedule's firing) to its caller, as an exception would."""
    settings = get_settings()
    dispatcher = get_dispatcher()
    admission = BatchAdmission(session, settings)
    outcomes: list[Accepted | Exception | None] = [None] * len(orders)
    staged: list[tuple[int, _Staged]] = []
    for index, order in enumerate(orders):
        try:
            staged.append((index, _stage(order, admission, dispatcher, settings)))
        except DomainError as exc:  # QuotaExceeded, NoBackendForKind: this one only
            outcomes[index] = exc
    if staged:
        rows.insert_jobs(session=session, rows=[job.row for _, job in staged])
        session.commit()  # the rows exist before any worker can see a message for them
    for index, job in staged:
        try:
            outcomes[index] = _hand_over(dispatcher, job)
        except Exception as exc:  # committed: the relay re-sends a publish that never left
            log.exception("job %s: hand-over failed after its commit", job.row["id"])
            outcomes[index] = exc
    return [outcome for outcome in outcomes if outcome is not None]


def _stage(
    order: JobOrder, admission: BatchAdmission, dispatcher: Dispatcher, settings: Settings
) -> _Staged:
    """The row of an admitted order and the backend it is born queued on (None: pending)."""
    admitted = admission.admit(order.owner.id)  # raises QuotaExceeded
    kind = kind_of(order.job_type)
    candidates = dispatcher.candidates(kind)
    if not candidates:
        raise routing.NoBackendForKind(routing.no_backend_message(kind, settings))
    target = None if admitted.hold else dispatcher.first_usable(kind, candidates)
    row = rows.new_row(
        owner_id=order.owner.id,
        job_type=order.job_type,
        params=order.params,
        max_attempts=settings.max_attempts,
        queued_on=target,
        message=_waiting_message(dispatcher, kind, admitted, target, settings),
    )
    return _Staged(row=row, kind=kind, target=target)


def _hand_over(dispatcher: Dispatcher, job: _Staged) -> Accepted:
    """Publish a committed job born queued (a pending one waits for the relay)."""
    job_id = job.row["id"]
    if job.target is None:
        status, backend = str(JobStatus.PENDING), None  # the outbox: the relay retries
    else:
        status, backend = dispatcher.publish_new(job_id, job.kind, job.target)
    metrics.job_submitted(job.row["job_type"], job.kind.queue, status, backend)
    return Accepted(job_id=job_id, status=status, backend=backend, queue=job.kind.queue)


def _statements_commit_alone(session: Session) -> None:
    """On PostgreSQL, when the session has begun nothing yet (a submit route's), run this
    submit's statements in autocommit: the INSERT is then one round trip instead of BEGIN,
    INSERT and COMMIT, and as durable (`synchronous_commit` stays on). The quota count and
    the INSERT were never atomic (READ COMMITTED; `admission` says a quota may pass by one).
    A session with work of its own (a schedule's firing) keeps its one transaction, and
    SQLite keeps its own handling of BEGIN and its writer lock."""
    if session.in_transaction() or session.get_bind().dialect.name != "postgresql":
        return
    session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def _waiting_message(
    dispatcher: Dispatcher,
    kind: JobKind,
    admission: Admission,
    target: str | None,
    settings: Settings,
) -> str:
    """The status message of a job born `pending`: why it waits."""
    if admission.hold:
        return held_message(admission.active, settings.QUOTA_ACTIVE_JOBS)
    if target is None:
        return dispatcher.waiting_reason(kind)
    return ""
