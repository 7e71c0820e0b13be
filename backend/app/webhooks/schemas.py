"""The `webhook_url` field every job submission takes, and what
`GET /reports/jobs/{id}/webhook-deliveries` shows: the target and every attempt."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from app.jobs.models import ReportJob
from app.webhooks import store

WEBHOOK_URL_FIELD: Any = Field(
    default=None,
    min_length=8,
    max_length=2000,
    pattern=r"^https?://[^\s]+$",
    description="POSTed the job's JSON, signed, once it is final (README: Webhooks). Its host "
    "must resolve to public addresses only, unless the service sets WEBHOOK_ALLOW_PRIVATE.",
)
"""As on the report requests. The schema checks the shape; `target.job_params`, called by
every submission, checks where the host resolves (422 naming `webhook_url`)."""


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
