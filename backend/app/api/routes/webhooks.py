"""A job's completion webhook: where it goes and what each delivery attempt got."""

from __future__ import annotations

from fastapi import APIRouter

from app.api import responses
from app.api.deps import CurrentUser, SessionDep
from app.api.params import ResourceId
from app.core.errors import NotFoundError
from app.jobs.store import reads
from app.webhooks.schemas import WebhookRead, webhook_of

router = APIRouter(prefix="/reports", tags=["reports"], responses=responses.AUTHENTICATED)


@router.get(
    "/jobs/{job_id}/webhook-deliveries",
    response_model=WebhookRead,
    responses=responses.errors(NotFoundError),
)
def webhook_deliveries(job_id: ResourceId, session: SessionDep, user: CurrentUser) -> WebhookRead:
    """The job's `webhook_url`, whether it was delivered, and every attempt so far."""
    job = reads.get_owned_job(session=session, user=user, job_id=job_id)
    return webhook_of(session, job)
