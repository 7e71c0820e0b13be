"""The report-ready e-mail: a follow-up of a heavy report whose request said `"notify": "email"`.

Registered on the report kinds in `app.jobs.registry`; `app.jobs.followups` says how
follow-ups are committed with the completion and published after it.

It goes to the owner's address and to the job's `notify_to` (a schedule's recipients),
screened again by `app.notifications.policy` when it is made: MAIL_ALLOWED_DOMAINS may
have changed since the schedule was saved, and MAIL_RECIPIENTS_PER_DAY counts the mail on
the day it is sent. What is refused is said in the report job's result (`mail_not_sent`),
which a schedule's firing repeats in its outcome (`app.schedules.tick.settle`).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.jobs import links
from app.jobs.models import ReportJob
from app.jobs.store import rows
from app.notifications import policy
from app.notifications.email import normalise_address
from app.notifications.jobs import report_ready_email_params
from app.users.models import User

log = logging.getLogger(__name__)
NOT_SENT = "mail_not_sent"
"""The key of the report job's result that says who was not mailed, and why."""


def download_url(settings: Settings, job_id: str, owner_id: int) -> str:
    """The absolute, signed link: the reader of the e-mail has no token to send."""
    base = settings.PUBLIC_BASE_URL.rstrip("/") or f"http://{settings.HOST}:{settings.PORT}"
    return base + links.download_path(settings, job_id, owner_id)


def addresses(owner: User, params: dict[str, Any]) -> list[str]:
    """The owner's address (if any) and the job's `notify_to`, normalised, once each."""
    found: list[str] = []
    for raw in [owner.email or "", *(params.get("notify_to") or [])]:
        try:
            address = normalise_address(str(raw)) if str(raw).strip() else ""
        except ValueError:
            log.warning("report-ready mail: %r is not an address, skipped", raw)
            continue
        if address and address not in found:
            found.append(address)
    return found


class ReportReadyNotice:
    """An `email` job to the report's owner and recipients with its download link."""

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
        if owner is None:
            return None
        to = addresses(owner, params)
        if not to:
            log.warning("job %s asked for an e-mail but its owner has no address", job_id)
            _not_sent(session, job_id, "your user has no e-mail address, and no recipient")
            return None
        reasons = {a: policy.refusal(a, user=owner, settings=settings) for a in to}
        refused = [reason for reason in reasons.values() if reason]
        to = [a for a, reason in reasons.items() if reason is None]
        try:
            if not to:
                raise policy.RecipientNotAllowed("no recipient may be mailed")
            policy.check_daily_cap(session, owner, len(to), settings=settings)
        except (policy.RecipientNotAllowed, policy.MailQuotaExceeded) as exc:
            log.warning("job %s: report-ready mail not sent: %s", job_id, exc.message)
            _not_sent(session, job_id, "; ".join([exc.message, *refused]))
            return None
        if refused:
            _not_sent(session, job_id, "; ".join(refused))
        notice = rows.create_job(
            session=session,
            owner=owner,
            job_type="email",
            params=report_ready_email_params(
                to=to[0] if len(to) == 1 else to,
                job_id=job_id,
                download_url=download_url(settings, job_id, owner_id),
                title=str(params.get("title") or "Your report"),
            ),
            max_attempts=settings.max_attempts,
        )
        session.flush()
        return notice.id


def _not_sent(session: Session, job_id: str, why: str) -> None:
    """Say in the report's result, in the completion's transaction, why mail was not sent."""
    result = session.scalar(select(ReportJob.result).where(ReportJob.id == job_id))
    session.execute(
        update(ReportJob)
        .where(ReportJob.id == job_id)
        .values(result={**(result or {}), NOT_SENT: why[:2000]})
        .execution_options(synchronize_session=False)
    )


REPORT_READY = ReportReadyNotice()
