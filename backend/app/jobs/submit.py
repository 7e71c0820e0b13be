"""Accepting a job from the API: one committed row, then a bounded hand-over. Never blocks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.core import metrics
from app.core.config import Settings, get_settings
from app.jobs import routing
from app.jobs.admission import Admission, admit
from app.jobs.dispatch import Dispatcher, get_dispatcher
from app.jobs.fairness import held_message
from app.jobs.registry import JobKind, kind_of
from app.jobs.states import JobStatus
from app.jobs.store import rows
from app.users.models import User


@dataclass(frozen=True)
class Accepted:
    """A job that now exists: `status` is `queued` on `backend`, or `pending` in the outbox."""

    job_id: str
    status: str
    backend: str | None
    queue: str


def accept_job(*, session: Session, owner: User, job_type: str, params: dict[str, Any]) -> Accepted:
    """Create the job and try to queue it. If no backend takes it, or its owner already has
    `QUOTA_ACTIVE_JOBS` jobs with the workers, it stays `pending` and is published later (the
    relay, or the worker that ends one of the owner's jobs): either way the caller gets its
    id at once (HTTP 202). Over a quota, `admission.QuotaExceeded` (HTTP 429)."""
    settings = get_settings()
    _statements_commit_alone(session)
    admission = admit(session, owner.id, settings)  # raises QuotaExceeded
    dispatcher = get_dispatcher()
    kind = kind_of(job_type)
    candidates = dispatcher.candidates(kind)
    if not candidates:
        raise routing.NoBackendForKind(routing.no_backend_message(kind, settings))
    target = None if admission.hold else dispatcher.first_usable(kind, candidates)
    row = rows.new_row(
        owner_id=owner.id,
        job_type=job_type,
        params=params,
        max_attempts=settings.max_attempts,
        queued_on=target,
        message=_waiting_message(dispatcher, kind, admission, target, settings),
    )
    rows.insert_job(session=session, row=row)
    session.commit()  # the row exists before any worker can see a message for it
    job_id = row["id"]
    if target is None:
        status, backend = str(JobStatus.PENDING), None  # the outbox: the relay retries
    else:
        status, backend = dispatcher.publish_new(job_id, kind, target)
    metrics.job_submitted(job_type, kind.queue, status, backend)
    return Accepted(job_id=job_id, status=status, backend=backend, queue=kind.queue)


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
