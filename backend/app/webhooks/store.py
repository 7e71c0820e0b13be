"""The webhook pass's reads and writes: which jobs are due, the claim, each attempt's outcome.

A claim is one transaction: clear the previous attempt's `next_attempt_at` with a
compare-and-set (it must still be due) and INSERT the next attempt's row, whose primary key
(job, attempt) admits one writer. So several passes (API processes, beat) running at once
never send the same attempt twice. Every time is the database's (`db_now()`).

First attempts are found through `report_jobs.webhook_url`, set with the row and cleared by
the claim of attempt 1, and its partial index: a pass reads the jobs that owe a first
attempt, not every job finished in the last `WEBHOOK_MAX_AGE_SECONDS` (a JSON path in
`params` can use no index).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy import Select, Table, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.db.base import new_id
from app.db.clock import db_now
from app.jobs.models import ReportJob
from app.jobs.states import FINAL_STATUSES
from app.webhooks.models import WebhookDelivery

T = cast(Table, WebhookDelivery.__table__)
JOBS = cast(Table, ReportJob.__table__)
MAX_ERROR = 500


@dataclass(frozen=True)
class Claim:
    delivery_id: str
    job_id: str
    attempt: int
    url: str


def webhook_url_of(job: ReportJob) -> str | None:
    value = (job.params or {}).get("webhook_url")
    return str(value) if value else None


def due(session: Session, settings: Settings) -> list[tuple[str, int]]:
    """(job id, attempt) of the deliveries due now: first attempts of recently finished jobs
    with a webhook, then retries whose time has come (or whose attempt's lease ran out)."""
    limit = settings.WEBHOOK_BATCH
    first = session.execute(first_attempts(settings)).all()
    retries = session.execute(
        select(T.c.job_id, T.c.attempt)
        .where(
            T.c.next_attempt_at <= db_now(),
            T.c.delivered.is_(False),
            T.c.attempt < settings.WEBHOOK_MAX_ATTEMPTS,
        )
        .order_by(T.c.next_attempt_at)
        .limit(limit)
    ).all()
    return [(row.id, 1) for row in first] + [(row.job_id, row.attempt + 1) for row in retries]


def first_attempts(settings: Settings) -> Select[str]:
    """Recently finished jobs that owe a first attempt, read off `ix_report_jobs_webhook_owed`
    (the condition `webhook_url IS NOT NULL` is what lets both databases use it).

    No test for an existing delivery row: the claim of attempt 1 clears `webhook_url` in the
    transaction of its INSERT, and such a test let PostgreSQL, before its statistics, read
    the whole `webhook_deliveries` table for a hash anti-join."""
    return (
        select(ReportJob.id)
        .where(
            ReportJob.webhook_url.is_not(None),
            ReportJob.finished_at >= db_now(-settings.WEBHOOK_MAX_AGE_SECONDS),
            ReportJob.status.in_(list(FINAL_STATUSES)),
        )
        .order_by(ReportJob.finished_at)
        .limit(settings.WEBHOOK_BATCH)
    )


def claim(session: Session, job_id: str, attempt: int, url: str, lease: float) -> Claim | None:
    """Take attempt `attempt` of the job's webhook, or None when another pass has it."""
    if attempt > 1:
        previous = session.connection().execute(
            update(T)
            .where(T.c.job_id == job_id, T.c.attempt == attempt - 1)
            .where(T.c.next_attempt_at.is_not(None), T.c.next_attempt_at <= db_now())
            .values(next_attempt_at=None)
        )
        if previous.rowcount != 1:
            session.rollback()
            return None
    delivery_id = new_id()
    try:
        session.execute(
            insert(T).values(
                job_id=job_id,
                attempt=attempt,
                id=delivery_id,
                url=url,
                started_at=db_now(),
                delivered=False,
                # A lease: if this process dies mid-send, the next pass retries.
                next_attempt_at=db_now(lease),
            )
        )
        if attempt == 1:
            _owed_no_more(session, job_id)
        session.commit()
    except IntegrityError:
        session.rollback()
        if attempt == 1:  # attempt 1 exists, so it is not owed (whoever wrote it cleared it)
            _owed_no_more(session, job_id)
            session.commit()
        return None
    return Claim(delivery_id=delivery_id, job_id=job_id, attempt=attempt, url=url)


def _owed_no_more(session: Session, job_id: str) -> None:
    """Out of the webhook pass's index; `params` keeps the URL (the API shows it)."""
    session.execute(update(JOBS).where(JOBS.c.id == job_id).values(webhook_url=None))


def finish(
    session: Session,
    claim: Claim,
    *,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    retry_in: float | None,
) -> None:
    """Record the attempt's outcome and when the next is due (`retry_in`, None: no more).
    An attempt whose lease ran out (another pass already retried it) records its outcome
    but no longer schedules anything."""
    outcome = {
        "finished_at": db_now(),
        "duration_ms": duration_ms,
        "status_code": status_code,
        "error": None if error is None else error[:MAX_ERROR],
        "delivered": error is None,
    }
    mine = T.c.id == claim.delivery_id
    owned = session.connection().execute(
        update(T)
        .where(mine, T.c.finished_at.is_(None), T.c.next_attempt_at.is_not(None))
        .values(**outcome, next_attempt_at=None if retry_in is None else db_now(retry_in))
    )
    if owned.rowcount != 1:
        session.execute(update(T).where(mine).values(**outcome))
    session.commit()


def attempts(session: Session, job_id: str) -> list[WebhookDelivery]:
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.job_id == job_id)
            .order_by(WebhookDelivery.attempt)
        )
    )
