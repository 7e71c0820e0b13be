"""The job state machine: the statuses, and which moves between them are legal.

Every status change is a compare-and-set UPDATE built in `app.jobs.store.transitions`, which
checks each move here first: an illegal one is a bug, raised before any SQL runs.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    PENDING = "pending"
    QUEUED = "queued"
    STARTED = "started"
    RETRYING = "retrying"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


S = JobStatus
FINAL_STATUSES = frozenset({S.COMPLETED, S.FAILED, S.CANCELLED})
LIVE_STATUSES = (S.PENDING, S.QUEUED, S.STARTED, S.RETRYING)

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
