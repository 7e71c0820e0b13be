"""What happens after a job completes: today, the report-ready e-mail (`"notify": "email"`).

The notice is its own `email` job, so it gets the mail queue's retries and a status of its
own, and a down SMTP server never fails the report. It is created once, right after the
completion is recorded; a worker killed between the two loses the notice, not the report.
"""

from __future__ import annotations

import logging
from typing import Any

from app.core.config import Settings
from app.core.db import session_scope
from app.jobs import service
from app.jobs.dispatch import get_dispatcher
from app.models import User

log = logging.getLogger(__name__)


def download_url(settings: Settings, job_id: str) -> str:
    base = settings.PUBLIC_BASE_URL.rstrip("/") or f"http://{settings.HOST}:{settings.PORT}"
    return f"{base}/reports/jobs/{job_id}/download"


def after_completed(
    *, settings: Settings, job_id: str, owner_id: int, params: dict[str, Any]
) -> None:
    if params.get("notify") != "email":
        return
    from app.notifications.jobs import report_ready_email_params

    try:
        with session_scope() as session:
            owner = session.get(User, owner_id)
            if owner is None or not owner.email:
                log.warning("job %s asked for an e-mail but its owner has no address", job_id)
                return
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
            notice_id = notice.id
        get_dispatcher().submit(notice_id)
        log.info("job %s: report-ready e-mail queued as job %s", job_id, notice_id)
    except Exception:
        log.exception("job %s: could not queue the report-ready e-mail", job_id)
