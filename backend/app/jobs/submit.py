"""Accepting a job from the API: one committed row, then a bounded hand-over. Never blocks."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from app.core import metrics
from app.core.config import get_settings
from app.jobs import service
from app.jobs.dispatch import get_dispatcher
from app.jobs.registry import kind_of
from app.models import User
from app.schemas import JobAccepted


def accept_job(
    *, session: Session, owner: User, job_type: str, params: dict[str, Any]
) -> JobAccepted:
    """Create the job and try to queue it. If no backend takes it, it stays `pending` and the
    relay publishes it later: either way the caller gets its id at once (HTTP 202)."""
    job = service.create_job(
        session=session,
        owner=owner,
        job_type=job_type,
        params=params,
        max_attempts=get_settings().max_attempts,
    )
    session.commit()  # the row exists before any worker can see a message for it
    status, backend = get_dispatcher().submit(job.id, new_kind=kind_of(job_type))
    metrics.job_submitted(job_type, job.queue, status, backend)
    return JobAccepted(
        job_id=job.id,
        status=status,
        backend=backend,
        queue=job.queue,
        status_url=f"/reports/jobs/{job.id}",
    )
