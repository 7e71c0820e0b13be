"""The report-ready e-mail: a follow-up of a heavy report whose request said `"notify": "email"`.

Registered on the report kinds in `app.jobs.registry`; `app.jobs.followups` says how
follow-ups are committed with the completion and published after it.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.jobs import links
from app.jobs.store import rows
from app.notifications.jobs import report_ready_email_params
from app.users.models import User

log = logging.getLogger(__name__)


def download_url(settings: Settings, job_id: str, owner_id: int) -> str:
    """The absolute, signed link: the reader of the e-mail has no token to send."""
    base = settings.PUBLIC_BASE_URL.rstrip("/") or f"http://{settings.HOST}:{settings.PORT}"
    return base + links.download_path(settings, job_id, owner_id)


class ReportReadyNotice:
    """An `email` job to the report's owner with its download link."""

    def wanted(self, params: dict[str, Any]) -> bool:
        return params.get("notify") == "email"

    def add(
        self,
        *,
        session: Session,
        settings: Settings,
        job_id: str,
        owner_id: int,
        params: dict[str, Any],
    ) -> str | None:
        owner = session.get(User, owner_id)
        if owner is None or not owner.email:
            log.warning("job %s asked for an e-mail but its owner has no address", job_id)
            return None
        notice = rows.create_job(
            session=session,
            owner=owner,
            job_type="email",
            params=report_ready_email_params(
                to=owner.email,
                job_id=job_id,
                download_url=download_url(settings, job_id, owner_id),
                title=str(params.get("title") or "Your report"),
            ),
            max_attempts=settings.max_attempts,
        )
        session.flush()
        return notice.id


REPORT_READY = ReportReadyNotice()
