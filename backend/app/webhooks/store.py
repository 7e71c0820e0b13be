"""The webhook pass's reads and writes: which jobs are due, the claim, each attempt's outcome.

A claim is one transaction: clear the previous attempt's `next_attempt_at` with a
compare-and-set (it must still be due) and INSERT the next attempt's row, whose primary key
(job, attempt) admits one writer. So several passes (API processes, beat) running at once
never send the same attempt twice. Every time is the database's (`db_now()`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy import Table, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.db.base import new_id
from app.db.clock import db_now
from app.jobs.models import ReportJob
from app.jobs.states import FINAL_STATUSES
from app.webhooks.models import WebhookDelivery

T = cast(Table, WebhookDelivery.__table__)
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
    url = ReportJob.params["webhook_url"].as_string()
    first = session.execute(
        select(ReportJob.id)
        .where(
            ReportJob.finished_at >= db_now(-settings.WEBHOOK_MAX_AGE_SECONDS),
            ReportJob.status.in_(list(FINAL_STATUSES)),
            url.is_not(None),
            ~exists().where(T.c.job_id == ReportJob.id),
        )
        .order_by(ReportJob.finished_at)
        .limit(limit)
    ).all()
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
        session.commit()
    except IntegrityError:
        session.rollback()
        return None
    return Claim(delivery_id=delivery_id, job_id=job_id, attempt=attempt, url=url)


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
