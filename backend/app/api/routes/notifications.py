"""Notification routes: one e-mail, or a bulk send, as jobs on the notifications queue.

Bodies are checked before the job exists (`notifications/submissions.py`; a `webhook_url`
too, called signed once the job is final); per-recipient problems that only the SMTP server
can tell (mailbox unknown, greylisting) are in the bulk job's result.
"""

from __future__ import annotations

from fastapi import APIRouter, status

from app.api import responses
from app.api.deps import CurrentUser, SessionDep
from app.core.config import get_settings
from app.core.errors import ConflictError
from app.jobs.schemas import JobAccepted
from app.jobs.submit import accept_job
from app.notifications import submissions
from app.notifications.schemas import BulkEmailRequest, EmailRequest

router = APIRouter(
    prefix="/notifications", tags=["notifications"], responses=responses.AUTHENTICATED
)


@router.post(
    "/email",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=responses.submits(ConflictError),
)
def send_email(body: EmailRequest, session: SessionDep, user: CurrentUser) -> JobAccepted:
    """Send one message (text, optional HTML, optionally a finished job's file attached).

    A sync route: the template is compiled in the thread pool, never on the event loop."""
    params = submissions.email_params(
        session=session, settings=get_settings(), user=user, body=body
    )
    accepted = accept_job(session=session, owner=user, job_type="email", params=params)
    return JobAccepted.model_validate(accepted)


@router.post(
    "/bulk",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=responses.submits(),
)
def send_bulk(body: BulkEmailRequest, session: SessionDep, user: CurrentUser) -> JobAccepted:
    """Send a personalised message to each recipient; the job result lists every outcome."""
    params = submissions.bulk_params(session=session, settings=get_settings(), user=user, body=body)
    accepted = accept_job(session=session, owner=user, job_type="bulk_email", params=params)
    return JobAccepted.model_validate(accepted)
