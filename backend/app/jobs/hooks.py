"""What happens after a job completes: today, the report-ready e-mail (`"notify": "email"`).

The notice is its own `email` job, so it gets the mail queue's retries and a status of its
own, and a down SMTP server never fails the report. Its row is added in the transaction that
records the completion (`add_report_ready_notice`), so a completed report always has its
notice: if the worker dies before publishing it, the notice waits `pending` in the outbox
and the relay sends it.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.jobs import service
from app.jobs.dispatch import get_dispatcher
from app.models import User

log = logging.getLogger(__name__)


def download_url(settings: Settings, job_id: str) -> str:
    base = settings.PUBLIC_BASE_URL.rstrip("/") or f"http://{settings.HOST}:{settings.PORT}"
    return f"{base}/reports/jobs/{job_id}/download"


def wants_notice(params: dict[str, Any]) -> bool:
    return params.get("notify") == "email"


def add_report_ready_notice(
    *, session: Session, settings: Settings, job_id: str, owner_id: int, params: dict[str, Any]
) -> str | None:
    """Add the notice's `email` job (pending) to `session`; its id, or None without address."""
    from app.notifications.jobs import report_ready_email_params

    owner = session.get(User, owner_id)
    if owner is None or not owner.email:
        log.warning("job %s asked for an e-mail but its owner has no address", job_id)
        return None
    notice = service.create_job(
        session=session,
        owner=owner,
        job_type="email",
        params=report_ready_email_params(
            to=owner.email,
            job_id=job_id,
            download_url=download_url(settings, job_id),
            title=str(params.get("title") or "Your report"),
        ),
        max_attempts=settings.max_attempts,
    )
    session.flush()
    return notice.id


def send_notice(job_id: str, notice_id: str) -> None:
    """Publish a committed notice. If this fails, the relay publishes it from the outbox."""
    try:
        get_dispatcher().submit(notice_id)
    except Exception:
        log.exception("job %s: report-ready e-mail %s left for the relay", job_id, notice_id)
        return
    log.info("job %s: report-ready e-mail queued as job %s", job_id, notice_id)
