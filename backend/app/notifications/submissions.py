"""From a mail request to the params of its job: every check a person can act on happens
here, before the job exists (an SMTP server configured, template syntax and the variables
it reads, where a `webhook_url` goes, who the caller may mail and how many today, the attached
job), so a mistake is a 4xx now rather than a failed job later.

A bulk send skips a malformed or refused recipient, or one whose context lacks a variable
the template reads, instead of refusing the list; the skipped ones, with their reasons, are
listed in the job's result.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import InvalidInputError
from app.notifications import policy
from app.notifications.attachments import job_attachment
from app.notifications.schemas import BulkEmailRequest, EmailRequest
from app.notifications.templates import MailTemplate
from app.users.models import User
from app.webhooks.target import job_params as webhook_params


def email_params(
    *, session: Session, settings: Settings, user: User, body: EmailRequest
) -> dict[str, Any]:
    """The params of one `email` job. Compiles the template: call it off the event loop."""
    check_smtp(settings)
    hook = webhook_params({}, body.webhook_url, settings)  # before the daily cap's lock
    template = body.check_template()
    assert isinstance(body.to, list)  # the validator made it one
    missing = template.missing(body.context)
    if missing:
        raise MissingTemplateVariable(
            f"the template reads {_names(missing)}, which 'context' does not give: the mail "
            f"to {', '.join(body.to)} would fail. Add {_names(missing)} to 'context'."
        )
    policy.check_recipients(body.to, user=user, settings=settings)
    policy.check_daily_cap(session, user, len(body.to), settings=settings)
    params = body.model_dump(exclude={"attach_job_id", "webhook_url"}, exclude_none=True)
    if body.attach_job_id:
        attachment = job_attachment(
            settings=settings, session=session, owner=user, job_id=body.attach_job_id
        )
        params["attachments"] = [attachment]
    return {**params, **hook}


def bulk_params(
    *, session: Session, settings: Settings, user: User, body: BulkEmailRequest
) -> dict[str, Any]:
    """The params of one `bulk_email` job. Compiles the template: call it off the event loop."""
    check_smtp(settings)
    hook = webhook_params({}, body.webhook_url, settings)
    template = body.check_template()
    params = body.model_dump(exclude={"webhook_url"}, exclude_none=True)
    complete, incomplete = _with_variables(template, params["recipients"], body.context)
    screened = policy.screen_bulk(
        complete, body.invalid_recipients + incomplete, user=user, settings=settings
    )
    policy.check_daily_cap(session, user, len(screened.recipients), settings=settings)
    params["recipients"] = screened.recipients
    if screened.skipped:
        params["skipped"] = screened.skipped  # listed in the job's result, never sent
    return {**params, **hook}


class SmtpNotConfigured(InvalidInputError):
    """Mail asked for while this service has no SMTP server to send it through."""


class MissingTemplateVariable(InvalidInputError):
    """The template reads a variable the request's context does not give."""


def check_smtp(settings: Settings) -> None:
    if not settings.SMTP_HOST.strip():
        raise SmtpNotConfigured(
            "e-mail is off on this service: no SMTP server is configured. The operator sets "
            "SMTP_HOST and SMTP_PORT (the server), MAIL_FROM (the sender address) and, if the "
            "server asks, SMTP_USER, SMTP_PASSWORD and SMTP_SECURITY; /health/ready shows it."
        )


def _names(variables: list[str]) -> str:
    return ", ".join(repr(name) for name in variables)


def _with_variables(
    template: MailTemplate, recipients: list[dict[str, Any]], shared: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Recipients whose context (theirs over the shared one, and `email`, as the worker
    renders) gives every variable the template reads; the others, each with its reason."""
    complete: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    for recipient in recipients:
        context = {**shared, **(recipient.get("context") or {}), "email": recipient["email"]}
        missing = template.missing(context)
        if missing:
            reason = (
                f"{recipient['email']}: the template reads {_names(missing)}, which neither "
                "this recipient's context nor the shared 'context' gives"
            )
            skipped.append({"email": recipient["email"], "reason": reason})
        else:
            complete.append(recipient)
    return complete, skipped
