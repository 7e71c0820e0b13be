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
    queued_cap = settings.QUOTA_QUEUED_JOBS
    rate_cap = settings.QUOTA_SUBMISSIONS_PER_MINUTE
    active_cap = settings.QUOTA_ACTIVE_JOBS
    if queued_cap <= 0 and rate_cap <= 0 and active_cap <= 0:
        return ADMIT_NOW
    caps = {
        "owner": owner_id,
        "active_cap": max(active_cap, 0),
        "queued_cap": max(queued_cap, 0),
        "rate_cap": max(rate_cap, 0),
    }
    row = session.execute(_usage_statement(), caps).one()
    active, unfinished, recent, oldest_recent, now = row.tuple()
    if queued_cap > 0 and unfinished >= queued_cap:
        raise QuotaExceeded(
            f"too many unfinished jobs: you have {unfinished}, the limit is {queued_cap} "
            "(QUOTA_QUEUED_JOBS); wait for some to finish or cancel them "
            "(POST /reports/jobs/{job_id}/cancel)",
            retry_after=30,
        )
    if rate_cap > 0 and recent >= rate_cap:
        raise QuotaExceeded(
            f"too many submissions: at most {rate_cap} jobs per minute per user "
            "(QUOTA_SUBMISSIONS_PER_MINUTE)",
            retry_after=_until_window_frees(oldest_recent, now),
        )
    return Admission(hold=active_cap > 0 and active >= active_cap, active=active)


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
