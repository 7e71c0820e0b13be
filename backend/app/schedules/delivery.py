"""How a schedule's reports reach people: 'none', 'email' or 'webhook', checked when a
schedule is created or changed, so a delivery that cannot work is a 422 naming its field
now rather than a silent firing later.

- 'email': each firing's report-ready mail (`app.notifications.report_ready`) goes to the
  owner's address and to `recipients`, each of whom the owner must be allowed to mail
  (`app.notifications.policy`: own address, MAIL_ALLOWED_DOMAINS, admins anyone). The
  daily cap (MAIL_RECIPIENTS_PER_DAY) is not checked here: it applies when the mail is
  made, after each firing's report, which records why when it refuses.
- 'webhook': the report's `webhook_url` is POSTed the final job (`app.webhooks`), no mail.

Stored in the schedule's params JSON (no column): `delivery`, and in the job params each
firing copies, `notify: "email"` and `notify_to` (the recipients besides the owner) for the
follow-up, and `webhook_url` for the sender. A `webhook_url` with another delivery is
still called: the webhook is the report's, the delivery says what the schedule promises.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from app.core.config import Settings
from app.notifications import policy
from app.schedules.timing import InvalidSchedule
from app.users.models import User

Mode = Literal["none", "email", "webhook"]
MODES: tuple[Mode, ...] = ("none", "email", "webhook")
MAX_RECIPIENTS = 20
"""Besides the owner; the report-ready mail is one `email` job, at most 50 addresses."""


@dataclass(frozen=True)
class Delivery:
    mode: Mode
    recipients: list[str]
    webhook_url: str | None


def of(params: dict[str, Any]) -> Delivery:
    """The delivery a schedule's params say (rows from before `delivery` was stored say it
    by their `notify`)."""
    job_params: dict[str, Any] = params.get("job_params") or {}
    stored = params.get("delivery")
    mode: Mode = "email" if job_params.get("notify") == "email" else "none"
    if stored in MODES:
        mode = stored
    recipients = [str(a) for a in job_params.get("notify_to") or []]
    url = job_params.get("webhook_url")
    return Delivery(mode, recipients if mode == "email" else [], str(url) if url else None)


def check(
    delivery: Delivery, *, owner: User, settings: Settings, url_field: str = "report.webhook_url"
) -> Delivery:
    """The delivery, its recipients without the owner's own address and duplicates, or
    `InvalidSchedule` naming the field to fix."""
    if delivery.recipients and delivery.mode != "email":
        raise InvalidSchedule(
            f"recipients: are mailed each report, which delivery '{delivery.mode}' does not "
            "do; set delivery to 'email', or leave recipients out"
        )
    if delivery.mode == "webhook" and not delivery.webhook_url:
        raise InvalidSchedule(
            f"{url_field}: delivery 'webhook' POSTs each report to a webhook_url; give one "
            "(an http:// or https:// URL of yours), or choose delivery 'email' or 'none'"
        )
    own = (owner.email or "").strip().lower()
    recipients = list(dict.fromkeys(a for a in delivery.recipients if a.lower() != own))
    if delivery.mode == "email" and not own and not recipients:
        raise InvalidSchedule(
            "delivery: 'email' mails the owner, and your user has no address; set it with "
            "`reportctl token create NAME --email you@example.com`, or give recipients"
        )
    if len(recipients) > MAX_RECIPIENTS:
        raise InvalidSchedule(f"recipients: at most {MAX_RECIPIENTS} addresses")
    refused = [r for a in recipients if (r := policy.refusal(a, user=owner, settings=settings))]
    if refused:
        raise InvalidSchedule(
            "recipients: you may not mail " + "; ".join(refused) + ". Remove these addresses, "
            "or ask the operator to add their domain to MAIL_ALLOWED_DOMAINS"
        )
    return Delivery(delivery.mode, recipients, delivery.webhook_url)


def store(params: dict[str, Any], delivery: Delivery) -> dict[str, Any]:
    """A schedule's params with this (checked) delivery; its webhook_url is set apart (a
    checked one, by `app.webhooks.target.job_params`)."""
    job_params = {
        k: v
        for k, v in (params.get("job_params") or {}).items()
        if k not in ("notify", "notify_to")
    }
    if delivery.mode == "email":
        job_params["notify"] = "email"
        if delivery.recipients:
            job_params["notify_to"] = delivery.recipients
    return {**params, "delivery": delivery.mode, "job_params": job_params}
