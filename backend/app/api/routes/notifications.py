"""Notification routes: one e-mail, or a bulk send, as jobs on the notifications queue.

Bodies are validated up front (addresses, template syntax, recipient count): a mistake is a
422 now, not a failed job later. Per-recipient problems that only the server can tell
(mailbox unknown, greylisting) are in the bulk job's result.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status

from app.api.deps import CurrentUser, SessionDep
from app.core.config import get_settings
from app.jobs import artifacts, service
from app.jobs.submit import accept_job
from app.models import JobStatus, User
from app.notifications.email import MAX_ATTACHMENT_BYTES
from app.notifications.schemas import BulkEmailRequest, EmailRequest
from app.schemas import JobAccepted

router = APIRouter(prefix="/notifications", tags=["notifications"])


@router.post("/email", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
def send_email(body: EmailRequest, session: SessionDep, user: CurrentUser) -> JobAccepted:
    """Send one message (text, optional HTML, optionally a finished job's file attached)."""
    params = body.model_dump(exclude={"attach_job_id"}, exclude_none=True)
    if body.attach_job_id:
        params["attachments"] = [_attachment(session, user, body.attach_job_id)]
    return accept_job(session=session, owner=user, job_type="email", params=params)


@router.post("/bulk", status_code=status.HTTP_202_ACCEPTED, response_model=JobAccepted)
def send_bulk(body: BulkEmailRequest, session: SessionDep, user: CurrentUser) -> JobAccepted:
    """Send a personalised message to each recipient; the job result lists every outcome."""
    params = body.model_dump(exclude_none=True)
    return accept_job(session=session, owner=user, job_type="bulk_email", params=params)


def _attachment(session: SessionDep, user: User, job_id: str) -> dict[str, str]:
    """The stored file of a completed job of the caller, as the email handler expects it."""
    try:
        job = service.get_owned_job(session=session, user=user, job_id=job_id)
    except service.JobNotFound:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"attach_job_id: no job {job_id} for this token",
        ) from None
    if job.status != JobStatus.COMPLETED or not job.artifact_path:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail=f"attach_job_id: job {job_id} has no file to attach (status: {job.status}); "
            "wait until it is completed",
        )
    if (job.artifact_size or 0) > MAX_ATTACHMENT_BYTES:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            detail=f"attach_job_id: the file is {job.artifact_size:,} bytes, more than mail "
            f"can carry ({MAX_ATTACHMENT_BYTES:,}); send its download link instead",
        )
    path = artifacts.resolve(get_settings(), job.artifact_path)
    return {
        "path": str(path),
        "filename": job.artifact_name or path.name,
        "mime_type": job.artifact_mime or "application/octet-stream",
    }
