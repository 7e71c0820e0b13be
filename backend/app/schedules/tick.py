"""`tick(now)`: fire every schedule that is due, once per due time, whoever else ticks.

Every relay pass calls `tick_due` (`app.jobs.registry: PERIODIC_PATHS`): the API's relay
thread in every mode, and Celery beat's relay task. Any number of them may tick at the same
instant. Each firing is claimed in one transaction: INSERT the firing row, whose unique key
(schedule, due time) admits one of them, and move `next_due_at` on with a compare-and-set
(`WHERE next_due_at = <the value read>`), which also stops a ticker whose clock saw another
due time. The loser of either rolls back and skips.

Catch-up policy: after downtime the missed due times collapse into one run, keyed by the
latest of them (its `missed` counts the others), and `next_due_at` moves to the first due
time after now: one run on return, never a burst.

A report schedule's job is created in the claiming transaction (`accept_job` commits both),
so a firing has its job or did not happen. A duty runs after the claim commits (at most once
per due time; a crash mid-duty waits for the next time). Times are the database's clock
(`db_now()`), or the `now` a test gives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import DomainError
from app.db.clock import db_now
from app.db.session import session_scope
from app.jobs.models import ReportJob
from app.jobs.states import FINAL_STATUSES, JobStatus
from app.notifications.report_ready import NOT_SENT
from app.schedules import duties, timing
from app.schedules.models import REPORT, Schedule, ScheduleFiring
from app.users.models import User

log = logging.getLogger(__name__)
OUTCOME_CHARS = 2000


@dataclass(frozen=True)
class Fired:
    schedule_id: str
    due_at: datetime
    missed: int
    job_id: str | None
    outcome: str | None


@dataclass
class TickReport:
    now: datetime | None = None
    fired: list[Fired] = field(default_factory=list)
    settled: int = 0


_seeded: set[str] = set()


def tick_due(settings: Settings) -> TickReport:
    """The relay pass's call: one tick by the database's clock."""
    return tick(settings)


def tick(settings: Settings, *, now: datetime | None = None, limit: int = 50) -> TickReport:
    report = TickReport()
    with session_scope() as session:
        clock = now or session.scalar(select(db_now()))
        assert clock is not None
        report.now = clock
    if settings.DATABASE_URL not in _seeded:
        duties.seed(settings, clock)
        _seeded.add(settings.DATABASE_URL)
    report.settled = settle(settings)
    with session_scope() as session:
        due = session.scalars(
            select(Schedule.id)
            .where(Schedule.paused.is_(False), Schedule.next_due_at <= clock)
            .order_by(Schedule.next_due_at)
            .limit(limit)
        ).all()
    for schedule_id in due:
        try:
            fired = fire(settings, schedule_id, clock)
        except Exception:
            log.exception("schedule %s: firing failed", schedule_id)
            continue
        if fired is not None:
            report.fired.append(fired)
    return report


def fire(
    settings: Settings, schedule_id: str, now: datetime, *, manual: bool = False
) -> Fired | None:
    """Fire one schedule if it is due at `now` (or at once, `manual`); None if it was not
    due, or another process fired it."""
    with session_scope() as session:
        claimed = _claim(session, schedule_id, now, manual=manual)
        if claimed is None:
            return None
        schedule, firing = claimed
        if schedule.kind == REPORT:
            return _submit(settings, session, schedule, firing)
        duty = str(schedule.params.get("duty"))
        fired_id, due_at, missed = firing.id, firing.due_at, firing.missed
    try:
        ok, outcome = True, _describe(duties.run(settings, duty))
    except Exception as exc:
        log.exception("duty %s failed", schedule_id)
        ok, outcome = False, f"failed: {type(exc).__name__}: {exc}"
    with session_scope() as session:
        _record(session, schedule_id, fired_id, ok=ok, outcome=outcome, pause_after=None)
    return Fired(schedule_id, due_at, missed, None, outcome)


def _claim(
    session: Session, schedule_id: str, now: datetime, *, manual: bool
) -> tuple[Schedule, ScheduleFiring] | None:
    schedule = session.get(Schedule, schedule_id)
    if schedule is None or (not manual and (schedule.paused or schedule.next_due_at > now)):
        return None
    slot = schedule.next_due_at
    if manual:
        due_at, missed, following = now, 0, slot
    else:
        timing_of: dict[str, Any] = {
            "cron": schedule.cron,
            "interval_seconds": schedule.interval_seconds,
            "timezone": schedule.timezone,
        }
        due_at, missed = timing.latest_due(**timing_of, first=slot, now=now)
        following = timing.next_after(**timing_of, after=now, anchor=due_at)
    firing = ScheduleFiring(
        schedule_id=schedule_id, due_at=due_at, fired_at=now, missed=missed, manual=manual
    )
    session.add(firing)
    try:
        session.flush()  # the unique key (schedule, due time): one ticker wins
        moved = session.execute(
            update(Schedule)
            .where(Schedule.id == schedule_id, Schedule.next_due_at == slot)
            .values(next_due_at=following, last_fired_at=now)
            .execution_options(synchronize_session=False)
        )
    except DBAPIError as exc:  # IntegrityError: fired; SQLite: a writer got there first
        log.debug("schedule %s at %s: not ours (%s)", schedule_id, due_at, type(exc).__name__)
        session.rollback()
        return None
    if getattr(moved, "rowcount", 0) != 1:
        session.rollback()  # another ticker moved it on: its firing stands
        return None
    if missed:
        log.info("schedule %s: one catch-up run for %d missed due times", schedule_id, missed)
    return schedule, firing


def _submit(
    settings: Settings, session: Session, schedule: Schedule, firing: ScheduleFiring
) -> Fired:
    """An ordinary job, its row committed with the firing (accept_job commits)."""
    from app.jobs.submit import accept_job

    schedule_id, due_at, missed = schedule.id, firing.due_at, firing.missed
    owner = session.get(User, schedule.owner_id) if schedule.owner_id is not None else None
    params = dict(schedule.params.get("job_params") or {}, schedule_id=schedule_id)
    try:
        if owner is None:
            raise LookupError("the schedule's owner no longer exists")
        accepted = accept_job(
            session=session,
            owner=owner,
            job_type=str(schedule.params.get("job_type")),
            params=params,
        )
    except (DomainError, LookupError) as exc:
        if firing.manual and isinstance(exc, DomainError):
            raise  # run now: the caller is told (429, 503), and nothing is recorded
        # Not submitted (over a quota, no backend for the kind...): a failure of this firing.
        message = exc.message if isinstance(exc, DomainError) else str(exc)
        outcome = f"not submitted: {message}"
        _record(
            session,
            schedule_id,
            firing.id,
            ok=False,
            outcome=outcome,
            pause_after=settings.SCHEDULE_MAX_FAILURES,
        )
        return Fired(schedule_id, due_at, missed, None, outcome)
    with session_scope() as other:
        other.execute(
            update(ScheduleFiring)
            .where(ScheduleFiring.id == firing.id)
            .values(job_id=accepted.job_id)
        )
        other.execute(
            update(Schedule)
            .where(Schedule.id == schedule_id)
            .values(last_outcome=f"submitted job {accepted.job_id}")
        )
    return Fired(schedule_id, due_at, missed, accepted.job_id, None)


def settle(settings: Settings) -> int:
    """Record the outcome of report firings whose job is final (with why its mail was not
    sent, if it was not); count failures in a row and pause a schedule after
    SCHEDULE_MAX_FAILURES of them, saying why. A report made but not mailed is no failure:
    the next firing may mail again (the daily cap), and a pause would not fix a recipient."""
    with session_scope() as session:
        done = session.execute(
            select(
                ScheduleFiring.id,
                ScheduleFiring.schedule_id,
                ReportJob.id,
                ReportJob.status,
                ReportJob.error,
                ReportJob.result[NOT_SENT].as_string(),
            )
            .join(ReportJob, ReportJob.id == ScheduleFiring.job_id)
            .where(
                ScheduleFiring.outcome.is_(None),
                ReportJob.status.in_([str(s) for s in FINAL_STATUSES]),
            )
            .limit(200)
        ).all()
    settled = 0
    for firing_id, schedule_id, job_id, status, error, not_mailed in done:
        ok = status == JobStatus.COMPLETED
        outcome = f"{status} (job {job_id})" + ("" if ok or not error else f": {error}")
        if not_mailed:  # the report is there; its mail is not (the daily cap, a recipient)
            outcome += f"; mail not sent: {not_mailed}"
        with session_scope() as session:
            moved = session.execute(
                update(ScheduleFiring)
                .where(ScheduleFiring.id == firing_id, ScheduleFiring.outcome.is_(None))
                .values(outcome=outcome[:OUTCOME_CHARS])
            )
            if getattr(moved, "rowcount", 0) != 1:
                continue  # another ticker settled it
            settled += 1
            if status == JobStatus.CANCELLED:
                session.execute(
                    update(Schedule)
                    .where(Schedule.id == schedule_id)
                    .values(last_outcome=outcome[:OUTCOME_CHARS])
                )
                continue
            _count(
                session,
                schedule_id,
                ok=ok,
                outcome=outcome,
                pause_after=(settings.SCHEDULE_MAX_FAILURES),
            )
    return settled


def _record(
    session: Session,
    schedule_id: str,
    firing_id: str,
    *,
    ok: bool,
    outcome: str,
    pause_after: int | None,
) -> None:
    session.execute(
        update(ScheduleFiring)
        .where(ScheduleFiring.id == firing_id)
        .values(outcome=outcome[:OUTCOME_CHARS])
        .execution_options(synchronize_session=False)
    )
    _count(session, schedule_id, ok=ok, outcome=outcome, pause_after=pause_after)


def _count(
    session: Session, schedule_id: str, *, ok: bool, outcome: str, pause_after: int | None
) -> None:
    """One more success (the count of failures in a row goes back to 0) or failure; a duty
    (`pause_after=None`) never pauses itself: a failing health check must keep running."""
    failures = 0 if ok else Schedule.consecutive_failures + 1
    session.execute(
        update(Schedule)
        .where(Schedule.id == schedule_id)
        .values(last_outcome=outcome[:OUTCOME_CHARS], consecutive_failures=failures)
        .execution_options(synchronize_session=False)
    )
    if ok or not pause_after:
        return
    session.execute(
        update(Schedule)
        .where(
            Schedule.id == schedule_id,
            Schedule.paused.is_(False),
            Schedule.consecutive_failures >= pause_after,
        )
        .values(
            paused=True,
            paused_reason=f"paused after {pause_after} failed runs in a row; the last: {outcome}"[
                :OUTCOME_CHARS
            ],
        )
        .execution_options(synchronize_session=False)
    )


def _describe(result: dict[str, Any]) -> str:
    return "ok: " + ", ".join(f"{key}={value}" for key, value in result.items())
