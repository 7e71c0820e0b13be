"""The service's own periodic duties, as schedule rows: what each runs, and how often.

They were Celery beat entries, and so ran only where beat ran. As rows they run in every
mode, from whichever process ticks first (`app.schedules.tick`); beat now only drives the
relay pass that ticks. `seed` writes them at the first tick, idempotently, by id (an
operator's `paused` is kept; a changed interval or cron is applied).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.schedules import timing
from app.schedules.models import DUTY, Schedule, ScheduleFiring

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Duty:
    id: str
    name: str
    run: Callable[[Settings], dict[str, Any]]
    cron: str | None = None
    interval_seconds: int | None = None


def cleanup(settings: Settings) -> dict[str, Any]:
    """Finished jobs past JOB_RETENTION_DAYS with their files; firings as old as that too."""
    from app.db.clock import db_now
    from app.db.session import session_scope
    from app.jobs.cleanup import cleanup_old_jobs

    result: dict[str, Any] = dict(cleanup_old_jobs())
    keep = timedelta(days=settings.JOB_RETENTION_DAYS).total_seconds()
    with session_scope() as session:
        gone = session.execute(
            delete(ScheduleFiring).where(ScheduleFiring.fired_at < db_now(-keep))
        )
        result["firings_removed"] = int(getattr(gone, "rowcount", 0) or 0)
    return result


def health_check(settings: Settings) -> dict[str, Any]:
    """Database, broker, result store, disk; Celery workers per queue where there is a broker."""
    from app.monitoring import health

    celery_app = None
    if settings.CELERY_BROKER_URL:
        from app.core.celery_app import celery_app
    report = health.run_health_checks(settings=settings, celery_app=celery_app)
    return {"status": "ok" if report.ok else "unhealthy", "failing": report.failing}


def daily_stats(settings: Settings) -> dict[str, Any]:
    """Yesterday's (UTC) jobs by type and status; stored, and mailed once to ADMIN_EMAILS."""
    from app.monitoring.daily_stats import run_daily_report

    result = run_daily_report(settings=settings)
    return {"day": result["day"], "mailed_to": result["mailed_to"], "error": result["mail_error"]}


def duties(settings: Settings) -> dict[str, Duty]:
    return {
        duty.id: duty
        for duty in [
            Duty("duty-cleanup-old-jobs", "cleanup of old jobs", cleanup, cron="0 * * * *"),
            Duty(
                "duty-health-check",
                "health check",
                health_check,
                interval_seconds=max(int(settings.HEALTH_CHECK_SECONDS), 1),
            ),
            Duty("duty-daily-stats", "daily statistics report", daily_stats, cron="5 0 * * *"),
        ]
    }


def seed(settings: Settings, now: datetime) -> None:
    """Each duty's row, inserted if missing, its timing brought up to date if changed."""
    from app.db.session import session_scope

    for duty in duties(settings).values():
        try:
            with session_scope() as session:
                _seed_one(session, duty, now)
        except IntegrityError:
            pass  # another process seeded it first


def _seed_one(session: Session, duty: Duty, now: datetime) -> None:
    row = session.get(Schedule, duty.id)
    if row is None:
        session.add(
            Schedule(
                id=duty.id,
                name=duty.name,
                kind=DUTY,
                cron=duty.cron,
                interval_seconds=duty.interval_seconds,
                timezone="UTC",
                params={"duty": duty.id},
                next_due_at=_first_due(duty, now),
            )
        )
    elif (row.cron, row.interval_seconds) != (duty.cron, duty.interval_seconds):
        row.cron, row.interval_seconds = duty.cron, duty.interval_seconds
        row.next_due_at = _first_due(duty, now)


def _first_due(duty: Duty, now: datetime) -> datetime:
    return timing.next_after(
        cron=duty.cron, interval_seconds=duty.interval_seconds, timezone="UTC", after=now
    )


def run(settings: Settings, name: str) -> dict[str, Any]:
    """Run a duty row's function (an unknown duty, from a newer release, is an error)."""
    duty = duties(settings).get(name)
    if duty is None:
        raise LookupError(f"no duty {name!r} in this release")
    return duty.run(settings)
