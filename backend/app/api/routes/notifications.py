"""Notification routes: one e-mail, or a bulk send, as jobs on the notifications queue.

Bodies are validated up front (addresses, template syntax, recipient count, the attached
job, who the caller may mail and how many a day: `notifications/policy.py`): a mistake is a
4xx now, not a failed job later; a bulk send skips a malformed or refused recipient instead,
with its reason in the result. Per-recipient problems that only the
server can tell (mailbox unknown, greylisting) are in the bulk job's result.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from app.api.deps import CurrentUser, SessionDep
from app.core.config import get_settings
from app.jobs.schemas import JobAccepted
from app.jobs.submit import accept_job
from app.notifications import policy
from app.notifications.attachments import job_attachment
from app.notifications.schemas import BulkEmailRequest, EmailRequest

router = APIRouter(prefix="/notifications", tags=["notifications"])


@router.post("/email", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
def send_email(body: EmailRequest, session: SessionDep, user: CurrentUser) -> JobAccepted:
    """Send one message (text, optional HTML, optionally a finished job's file attached)."""
    body.check_template()  # here, in the thread pool: not on the event loop
    settings = get_settings()
    assert isinstance(body.to, list)  # the validator made it one
    policy.check_recipients(body.to, user=user, settings=settings)
    policy.check_daily_cap(session, user, len(body.to), settings=settings)
    params = body.model_dump(exclude={"attach_job_id"}, exclude_none=True)
    if body.attach_job_id:
        attachment = job_attachment(
            settings=get_settings(), session=session, owner=user, job_id=body.attach_job_id
        )
        params["attachments"] = [attachment]
    accepted = accept_job(session=session, owner=user, job_type="email", params=params)
    return JobAccepted.model_validate(accepted)


@router.post("/bulk", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
def send_bulk(body: BulkEmailRequest, session: SessionDep, user: CurrentUser) -> JobAccepted:
    """Send a personalised message to each recipient; the job result lists every outcome."""
    body.check_template()  # here, in the thread pool: not on the event loop
    settings = get_settings()
    params = body.model_dump(exclude_none=True)
    screened = policy.screen_bulk(
        params["recipients"], body.invalid_recipients, user=user, settings=settings
    )
    policy.check_daily_cap(session, user, len(screened.recipients), settings=settings)
    params["recipients"] = screened.recipients
    if screened.skipped:
        params["skipped"] = screened.skipped  # listed in the job's result, never sent
    accepted = accept_job(session=session, owner=user, job_type="bulk_email", params=params)
    return JobAccepted.model_validate(accepted)
