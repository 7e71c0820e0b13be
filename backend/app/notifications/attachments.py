"""Attaching a finished job's file to an e-mail: checked when the e-mail is requested.

A job the caller cannot see, one without a file yet, or a file too big for mail is refused
up front with a message naming `attach_job_id`, instead of failing the e-mail job later.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import ConflictError, InvalidInputError
from app.jobs.states import JobStatus
from app.jobs.store import reads
from app.notifications.email import MAX_ATTACHMENT_BYTES
from app.users.models import User


class UnknownAttachmentJob(InvalidInputError):
    """`attach_job_id` names no job of the caller (a field of the body, not the URL)."""


class AttachmentNotReady(ConflictError):
    """The job has no file to attach yet (or never will)."""


class AttachmentTooLarge(InvalidInputError):
    """The job's file is more than mail can carry."""


def job_attachment(
    *, settings: Settings, session: Session, owner: User, job_id: str
) -> dict[str, str]:
    """The stored file of a completed job of `owner`, as the email handler expects it."""
    try:
        job = reads.get_owned_job(session=session, user=owner, job_id=job_id)
    except reads.JobNotFound:
        raise UnknownAttachmentJob(f"attach_job_id: no job {job_id} for this token") from None
    if job.status != JobStatus.COMPLETED or not job.artifact_path:
        raise AttachmentNotReady(
            f"attach_job_id: job {job_id} has no file to attach (status: {job.status}); "
            "wait until it is completed"
        )
    if (job.artifact_size or 0) > MAX_ATTACHMENT_BYTES:
        raise AttachmentTooLarge(
            f"attach_job_id: the file is {job.artifact_size:,} bytes, more than mail "
            f"can carry ({MAX_ATTACHMENT_BYTES:,}); send its download link instead"
        )
    key = job.artifact_path
    return {
        # The storage key, never a host path: the e-mail worker may be on another host.
        "key": key,
        "filename": job.artifact_name or PurePosixPath(key).name,
        "mime_type": job.artifact_mime or "application/octet-stream",
    }
