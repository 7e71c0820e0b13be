"""Whether a user may submit one more job now, and whether it may go to a worker at once.

Per user, counted in the job table (so every API process and host sees the same numbers):

- `QUOTA_QUEUED_JOBS`: unfinished jobs (waiting or active). One more is refused (429).
- `QUOTA_SUBMISSIONS_PER_MINUTE`: jobs created in the last 60 s. One more is refused (429,
  `Retry-After` when the oldest of them leaves the window).
- `QUOTA_ACTIVE_JOBS`: jobs handed to workers at once (queued on a backend, running, or
  retrying). One more is accepted but waits `pending` for a slot, released fairly across
  users by `app.jobs.fairness`; it is never refused.

One statement answers all three. Each count stops at its own cap (a LIMIT inside it; the
indexes on `(owner_id, status)` and `(owner_id, created_at)` find the rows), so it costs the
same with a million finished jobs in the table, or a thousand stuck in a queue. A limit of
0 turns its check off; with all three off no query runs. Two submissions at the same
instant may both pass a limit by one: a quota here is a guard against a flood, not an
accounting of the last job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Integer,
    ScalarSelect,
    Select,
    bindparam,
    func,
    literal,
    select,
)
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import TooManyRequestsError
from app.db.clock import db_now
from app.jobs.models import ReportJob
from app.jobs.states import JobStatus

S = JobStatus
ACTIVE = (S.QUEUED, S.STARTED, S.RETRYING)
"""Statuses in which a job holds one of its owner's worker slots."""
WINDOW_SECONDS = 60.0


class QuotaExceeded(TooManyRequestsError):
    pass


@dataclass(frozen=True)
class Admission:
    hold: bool
    """True: the job waits `pending` until one of its owner's active jobs ends."""
    active: int


ADMIT_NOW = Admission(hold=False, active=0)


def admit(session: Session, owner_id: int, settings: Settings) -> Admission:
    """Raise QuotaExceeded if `owner_id` may not submit now; else say whether to hold."""
    return BatchAdmission(session, settings).admit(owner_id)


@dataclass
class _Usage:
    """An owner's counts as read at the start of a batch, plus the batch's own rows."""

    active: int
    unfinished: int
    recent: int
    oldest_recent: datetime | None
    now: datetime | None


class BatchAdmission:
    """Admission of several submissions written in one transaction (a group commit): each
    owner's usage is read once, and every job admitted since counts against the caps, so
    a batch of one user's submissions passes a limit no further than one at a time does."""

    def __init__(self, session: Session, settings: Settings) -> None:
        self._session = session
        self._settings = settings
        self._usage: dict[int, _Usage] = {}
        self._off = (
            settings.QUOTA_QUEUED_JOBS <= 0
            and settings.QUOTA_SUBMISSIONS_PER_MINUTE <= 0
            and settings.QUOTA_ACTIVE_JOBS <= 0
        )

    def admit(self, owner_id: int) -> Admission:
        """Raise QuotaExceeded if one more job of `owner_id` is refused; else say whether it
        waits for a slot, and count it."""
        if self._off:
            return ADMIT_NOW
        usage = self._usage.get(owner_id)
        if usage is None:
            usage = self._usage[owner_id] = self._read(owner_id)
        admission = _decide(usage, self._settings)
        usage.unfinished += 1
        usage.recent += 1
        if not admission.hold:
            usage.active += 1
        return admission

    def _read(self, owner_id: int) -> _Usage:
        settings = self._settings
        caps = {
            "owner": owner_id,
            "active_cap": max(settings.QUOTA_ACTIVE_JOBS, 0),
            "queued_cap": max(settings.QUOTA_QUEUED_JOBS, 0),
            "rate_cap": max(settings.QUOTA_SUBMISSIONS_PER_MINUTE, 0),
        }
        row = self._session.execute(_usage_statement(), caps).one()
        return _Usage(*row.tuple())


def _decide(usage: _Usage, settings: Settings) -> Admission:
    queued_cap = settings.QUOTA_QUEUED_JOBS
    rate_cap = settings.QUOTA_SUBMISSIONS_PER_MINUTE
    active_cap = settings.QUOTA_ACTIVE_JOBS
    if queued_cap > 0 and usage.unfinished >= queued_cap:
        raise QuotaExceeded(
            f"too many unfinished jobs: you have {usage.unfinished}, the limit is {queued_cap} "
            "(QUOTA_QUEUED_JOBS); wait for some to finish or cancel them "
            "(POST /reports/jobs/{job_id}/cancel)",
            retry_after=30,
        )
    if rate_cap > 0 and usage.recent >= rate_cap:
        raise QuotaExceeded(
            f"too many submissions: at most {rate_cap} jobs per minute per user "
            "(QUOTA_SUBMISSIONS_PER_MINUTE)",
            retry_after=_until_window_frees(usage.oldest_recent, usage.now),
        )
    return Admission(hold=active_cap > 0 and usage.active >= active_cap, active=usage.active)


def _until_window_frees(oldest: datetime | None, now: datetime | None) -> int:
    if oldest is None or now is None:
        return int(WINDOW_SECONDS)
    return max(int(WINDOW_SECONDS - (now - oldest).total_seconds()) + 1, 1)


OWNER: BindParameter[int] = bindparam("owner", type_=Integer)


def _count_upto(limit: str, *conditions: ColumnElement[bool]) -> ScalarSelect[int]:
    """How many of the owner's rows match, counting no further than the bound `limit`: the
    caller only compares with its cap, so a user with a huge backlog (jobs stuck `queued`
    while no worker runs, say) costs no more than one at the cap."""
    rows = (
        select(literal(1))
        .select_from(ReportJob)
        .where(ReportJob.owner_id == OWNER, *conditions)
        .limit(bindparam(limit, type_=Integer))
        .subquery()
    )
    return select(func.count()).select_from(rows).scalar_subquery()


@cache
def _usage_statement() -> Select[int, int, int, datetime, datetime]:
    """(active, unfinished, created in the window, oldest creation in it, the database's
    now), each count bounded by its cap. Built once: the hot path binds the owner and caps."""
    window = ReportJob.created_at >= db_now(-WINDOW_SECONDS)
    oldest = (  # one seek on (owner_id, created_at)
        select(func.min(ReportJob.created_at))
        .where(ReportJob.owner_id == OWNER, window)
        .scalar_subquery()
    )
    return select(
        _count_upto("active_cap", ReportJob.status.in_([str(s) for s in ACTIVE])),
        _count_upto("queued_cap", ReportJob.status.in_([str(s) for s in (S.PENDING, *ACTIVE)])),
        _count_upto("rate_cap", window),
        oldest,
        db_now(),
    )
