"""The `webhook_deliveries` table: one row per attempt to deliver a job's webhook.

The primary key (job, attempt) is also the claim: two relay passes that both find a job due
both try to INSERT the same next attempt, and only one succeeds (`store.claim`). While an
attempt is in flight its `next_attempt_at` is a lease deadline, so an attempt whose process
died is retried; once it ends, `next_attempt_at` says when the next one is due (NULL when
delivered or given up). Rows go with their job (ON DELETE CASCADE).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, new_id


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_next", "next_attempt_at"),)

    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("report_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    url: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    duration_ms: Mapped[int | None] = mapped_column(Integer, default=None)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
