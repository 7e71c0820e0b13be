"""From a mail request to the params of its job: every check a person can act on happens
here, before the job exists (template syntax, who the caller may mail and how many today,
the attached job), so a mistake is a 4xx now rather than a failed job later.

A bulk send skips a malformed or refused recipient instead of refusing the list; the skipped
ones, with their reasons, are listed in the job's result.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.notifications import policy
from app.notifications.attachments import job_attachment
from app.notifications.schemas import BulkEmailRequest, EmailRequest
from app.users.models import User


def email_params(
    *, session: Session, settings: Settings, user: User, body: EmailRequest
) -> dict[str, Any]:
    """The params of one `email` job. Compiles the template: call it off the event loop."""
    body.check_template()
    assert isinstance(body.to, list)  # the validator made it one
    policy.check_recipients(body.to, user=user, settings=settings)
    policy.check_daily_cap(session, user, len(body.to), settings=settings)
    params = body.model_dump(exclude={"attach_job_id"}, exclude_none=True)
    if body.attach_job_id:
        attachment = job_attachment(
            settings=settings, session=session, owner=user, job_id=body.attach_job_id
        )
        params["attachments"] = [attachment]
    return params


def bulk_params(
    *, session: Session, settings: Settings, user: User, body: BulkEmailRequest
) -> dict[str, Any]:
    """The params of one `bulk_email` job. Compiles the template: call it off the event loop."""
    body.check_template()
    params = body.model_dump(exclude_none=True)
    screened = policy.screen_bulk(
        params["recipients"], body.invalid_recipients, user=user, settings=settings
    )
    policy.check_daily_cap(session, user, len(screened.recipients), settings=settings)
    params["recipients"] = screened.recipients
    if screened.skipped:
        params["skipped"] = screened.skipped  # listed in the job's result, never sent
    return params
