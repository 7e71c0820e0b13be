"""Who a user may mail, and how many recipients a day.

- Recipients: an admin may mail anyone; any other user may mail their own address (the
  `--email` of `reportctl token create`) and addresses in `MAIL_ALLOWED_DOMAINS`
  (comma-separated, exact domains: a subdomain needs its own entry). Empty: only their own.
- Volume: at most `MAIL_RECIPIENTS_PER_DAY` recipients per user per UTC day (0: no cap),
  admins included, counted over the `email` and `bulk_email` jobs the user created that day
  (follow-up notices included: they are mail sent for the user). Counting jobs rather than
  deliveries counts what is queued but not yet sent, so a burst of requests cannot
  overshoot the cap before the workers catch up.

A single e-mail with a refused recipient is refused as a whole (422); a bulk send skips each
refused or malformed recipient, with its reason in the job's result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import InvalidInputError, TooManyRequestsError
from app.db.base import utcnow
from app.jobs.models import ReportJob
from app.users.models import User

MAIL_JOB_TYPES = ("email", "bulk_email")


class RecipientNotAllowed(InvalidInputError):
    pass


class MailQuotaExceeded(TooManyRequestsError):
    pass


def allowed_domains(settings: Settings) -> frozenset[str]:
    return frozenset(
        part.strip().lower().lstrip("@").encode("idna").decode("ascii")
        for part in settings.MAIL_ALLOWED_DOMAINS.split(",")
        if part.strip()
    )


def refusal(address: str, *, user: User, settings: Settings) -> str | None:
    """Why `user` may not mail the (normalised) `address`, or None if they may."""
    if user.is_admin:
        return None
    if user.email and address.lower() == user.email.strip().lower():
        return None
    domains = allowed_domains(settings)
    domain = address.rpartition("@")[2].lower()
    if domain in domains:
        return None
    if not domains:
        own = f" ({user.email})" if user.email else " (you have none set)"
        return f"{address}: you may only mail your own address{own}; MAIL_ALLOWED_DOMAINS is empty"
    return f"{address}: domain {domain!r} is not in MAIL_ALLOWED_DOMAINS"


def check_recipients(addresses: list[str], *, user: User, settings: Settings) -> None:
    """Refuse a single e-mail when any recipient is not allowed."""
    reasons = [r for a in addresses if (r := refusal(a, user=user, settings=settings))]
    if reasons:
        raise RecipientNotAllowed("recipient not allowed: " + "; ".join(reasons))


@dataclass
class Screened:
    recipients: list[dict[str, Any]]
    skipped: list[dict[str, str]]


def screen_bulk(
    recipients: list[dict[str, Any]],
    invalid: list[dict[str, str]],
    *,
    user: User,
    settings: Settings,
) -> Screened:
    """Split a bulk list into what is sent and what is skipped (with the reason)."""
    kept: list[dict[str, Any]] = []
    skipped = list(invalid)
    for recipient in recipients:
        reason = refusal(recipient["email"], user=user, settings=settings)
        if reason is None:
            kept.append(recipient)
        else:
            skipped.append({"email": recipient["email"], "reason": reason})
    if not kept:
        shown = "; ".join(item["reason"] for item in skipped[:5])
        more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
        raise RecipientNotAllowed(f"no recipient can be mailed: {shown}{more}")
    return Screened(recipients=kept, skipped=skipped)


def _recipients_of(job_type: str, params: dict[str, Any]) -> int:
    if job_type == "bulk_email":
        return len(params.get("recipients") or [])
    to = params.get("to")
    return 1 if isinstance(to, str) else len(to or [])


def _day_start(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def recipients_today(session: Session, user: User, *, now: datetime | None = None) -> int:
    start = _day_start(now or utcnow())
    rows = session.execute(
        select(ReportJob.job_type, ReportJob.params).where(
            ReportJob.owner_id == user.id,
            ReportJob.job_type.in_(MAIL_JOB_TYPES),
            ReportJob.created_at >= start,
        )
    ).tuples()
    return sum(_recipients_of(job_type, params or {}) for job_type, params in rows)


def check_daily_cap(session: Session, user: User, count: int, *, settings: Settings) -> None:
    """Raise MailQuotaExceeded if `count` more recipients would pass the user's daily cap."""
    cap = settings.MAIL_RECIPIENTS_PER_DAY
    if cap <= 0:
        return
    # Serialise one user's mail requests (PostgreSQL; SQLite has one writer anyway), so
    # two requests at once cannot both fit under the cap.
    session.execute(select(User.id).where(User.id == user.id).with_for_update())
    now = utcnow()
    used = recipients_today(session, user, now=now)
    if used + count <= cap:
        return
    tomorrow = _day_start(now) + timedelta(days=1)
    wait = max(int((tomorrow - now).total_seconds()) + 1, 1)
    raise MailQuotaExceeded(
        f"daily mail limit reached: at most {cap} recipients per user per day "
        f"(MAIL_RECIPIENTS_PER_DAY); {used} used today, this request has {count}. "
        f"Try again after {tomorrow:%Y-%m-%d %H:%M} UTC.",
        retry_after=wait,
    )
