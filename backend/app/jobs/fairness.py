"""Fair shares between users: which waiting jobs go to the workers next.

Brokers and the embedded executor take messages first in, first out, and know nothing of
users: 50 jobs of one user queued ahead of another user's one make it wait behind all 50. So
no user ever has more than `QUOTA_ACTIVE_JOBS` jobs handed to a backend (queued, running or
retrying, `admission.ACTIVE`); the rest wait `pending` in the outbox. Whenever a slot frees,
the waiting jobs are released in turns over users (each user's oldest first, one per user
per turn, never beyond a user's free slots): by a worker as soon as it finishes a job
(`release_for_owner`), and by every relay pass (`release`) for whatever else changed (a
cancel, a reaped job, a broker back from an outage).

A queue therefore holds at most `QUOTA_ACTIVE_JOBS` jobs of any one user, and another user's
new job waits behind at most that many of each other user's jobs, whatever their backlog; the
same on Celery, RQ and the embedded executor, because it happens before any backend sees a
message. The price is work-conservation above the cap: one user alone uses at most
`QUOTA_ACTIVE_JOBS` workers at once, so set it to about the workers' total concurrency.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.db.session import session_scope
from app.jobs.admission import ACTIVE
from app.jobs.dispatch import Dispatcher, get_dispatcher
from app.jobs.models import ReportJob
from app.jobs.registry import KINDS, kind_of
from app.jobs.states import JobStatus
from app.jobs.store import sweeps

log = logging.getLogger(__name__)
LOOKAHEAD = 8
"""Waiting jobs read per owner beyond their free slots, in case some cannot be queued."""


def held_message(active: int, cap: int) -> str:
    """The status message of a job held back for its owner's turn."""
    return (
        f"waiting for a free slot: {active} of your jobs are already queued or running "
        f"(at most {cap} at once, QUOTA_ACTIVE_JOBS)"
    )


def next_to_release(
    session: Session,
    settings: Settings,
    dispatcher: Dispatcher,
    *,
    older_than: float,
    owner_id: int | None = None,
) -> tuple[list[tuple[str, int]], dict[int, int]]:
    """The outbox jobs that could go to a backend now, in turns, and their owners' active
    counts. Only kinds that some backend would take now: a heavy job waiting for the Celery
    broker must not hold its owner's other jobs back (head-of-line blocking)."""
    kinds = [name for name, kind in KINDS.items() if dispatcher.could_take(kind)]
    if not kinds:
        return [], {}
    cap = settings.QUOTA_ACTIVE_JOBS
    waiting = sweeps.pending_by_turn(
        session=session,
        older_than=older_than,
        per_owner=cap + LOOKAHEAD if cap > 0 else None,
        owner_id=owner_id,
        job_types=kinds,
    )
    if cap <= 0 or not waiting:
        return waiting, {}
    owners = {owner for _, owner in waiting}
    active = sweeps.active_counts(
        session=session, owner_ids=owners, statuses=[str(s) for s in ACTIVE]
    )
    return waiting, active


def release(
    settings: Settings,
    dispatcher: Dispatcher,
    *,
    older_than: float,
    owner_id: int | None = None,
) -> list[str]:
    """Hand waiting jobs to a backend in turns, each owner up to their free slots; a job no
    backend took leaves its owner's slot to the owner's next job. Returns the ids queued."""
    with session_scope() as session:
        waiting, active = next_to_release(
            session, settings, dispatcher, older_than=older_than, owner_id=owner_id
        )
    cap = settings.QUOTA_ACTIVE_JOBS
    taken = dict(active)
    released: list[str] = []
    for job_id, owner in waiting:
        if cap > 0 and taken.get(owner, 0) >= cap:
            continue
        try:
            status, _ = dispatcher.submit(job_id)
        except Exception:  # one job's failure must not stop the others; the next pass retries
            log.exception("could not release job %s", job_id)
            continue
        if status == JobStatus.QUEUED:
            taken[owner] = taken.get(owner, 0) + 1
            released.append(job_id)
        elif status == JobStatus.PENDING:
            _say_why(dispatcher, job_id)
    return released


def _say_why(dispatcher: Dispatcher, job_id: str) -> None:
    """Its turn came but no backend took it: its message now says what it waits for."""
    with session_scope() as session:
        job_type = session.scalar(select(ReportJob.job_type).where(ReportJob.id == job_id))
        if job_type is None:
            return
        reason = dispatcher.waiting_reason(kind_of(job_type))
        session.execute(
            update(ReportJob)
            .where(
                ReportJob.id == job_id,
                ReportJob.status == JobStatus.PENDING,
                ReportJob.progress_message != reason,
            )
            .values(progress_message=reason)
        )


def release_for_owner(owner_id: int, settings: Settings) -> list[str]:
    """After one of `owner_id`'s jobs ended: hand their next waiting jobs to a backend at
    once, instead of at the next relay pass. Never raises: the relay catches up."""
    if settings.QUOTA_ACTIVE_JOBS <= 0:
        return []  # nothing is ever held back
    try:
        return release(settings, get_dispatcher(), older_than=0, owner_id=owner_id)
    except Exception:
        log.warning("could not release the jobs waiting for user %s", owner_id, exc_info=True)
        return []
