"""What `GET /reports/jobs/{id}/webhook-deliveries` shows: the target and every attempt."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from app.jobs.models import ReportJob
from app.webhooks import store


class DeliveryRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    at: datetime = Field(validation_alias="started_at")
    finished_at: datetime | None
    duration_ms: int | None
    status_code: int | None
    """The receiver's answer, when there was one (a 3xx too: redirects are not followed)."""
    error: str | None
    """Why the attempt failed; None when it was delivered (or is still in flight)."""
    delivered: bool
    next_attempt_at: datetime | None


class WebhookRead(BaseModel):
    url: str | None
    """The job's `webhook_url`; None when it was submitted without one."""
    delivered: bool
    deliveries: list[DeliveryRead]


def webhook_of(session: Session, job: ReportJob) -> WebhookRead:
    rows = store.attempts(session, job.id)
    return WebhookRead(
        url=store.webhook_url_of(job),
        delivered=any(row.delivered for row in rows),
        deliveries=[DeliveryRead.model_validate(row) for row in rows],
    )
