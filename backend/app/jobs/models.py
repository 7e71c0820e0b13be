"""The `report_jobs` table. The job row is the source of truth for every job, whatever its
backend: status, attempts, progress, outcome and the artifact it produced."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Float, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, new_id, utcnow
from app.jobs.states import FINAL_STATUSES, JobStatus
from app.users.models import User


class ReportJob(Base):
    __tablename__ = "report_jobs"
    __table_args__ = (
        # A user's list page, newest first (the order by created_at desc, id of
        # app/jobs/store/reads.py, read off the index: no sort of the user's jobs).
        Index("ix_report_jobs_owner_created_id", "owner_id", "created_at", "id"),
        # Per-user quotas and fair shares count a user's jobs by status (app/jobs/admission.py);
        # a list page filtered by status reads it newest first.
        Index("ix_report_jobs_owner_status_created", "owner_id", "status", "created_at", "id"),
        Index("ix_report_jobs_status_next", "status", "next_attempt_at"),
        # The embedded executor's queue in order (app/jobs/store/sweeps.py: runnable_local):
        # only its own jobs, so a poll reads the next few, whatever the backlog (migration 0014).
        Index(
            "ix_report_jobs_local_queue",
            "status",
            "queued_at",
            "created_at",
            sqlite_where=text("backend = 'local'"),
            postgresql_where=text("backend = 'local'"),
        ),
        Index("ix_report_jobs_status_heartbeat", "status", "heartbeat_at"),
        # Finished jobs past retention (app/jobs/cleanup.py): both conditions bound the scan,
        # so a pass reads what it deletes, not every finished job (migration 0012).
        Index("ix_report_jobs_status_created", "status", "created_at"),
        # Recent failures (app/monitoring/status.py).
        Index("ix_report_jobs_status_finished", "status", "finished_at"),
        # Jobs whose first webhook attempt is still owed (app/webhooks/store.py: due): only
        # they are in it, so the webhook pass costs the same however many jobs finished
        # without one (migration 0013). `status` leads as in the index above, so SQLite,
        # which has no statistics, prefers this one (a partial index counts as smaller).
        Index(
            "ix_report_jobs_webhook_owed",
            "status",
            "finished_at",
            sqlite_where=text("webhook_url IS NOT NULL"),
            postgresql_where=text("webhook_url IS NOT NULL"),
        ),
        # The event watcher's one query per tick: rows changed in the last seconds.
        Index("ix_report_jobs_updated", "updated_at"),
        # An admin's listing of everyone's jobs, newest first.
        Index("ix_report_jobs_created", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[int] = mapped_column(ForeignKey(User.id, ondelete="CASCADE"))
    job_type: Mapped[str] = mapped_column(String(40))
    queue: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING)
    backend: Mapped[str | None] = mapped_column(String(16), default=None)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    webhook_url: Mapped[str | None] = mapped_column(String(2000), default=None)
    """`params['webhook_url']` while the first delivery attempt is owed: set with the row,
    cleared by the claim of attempt 1 (`app.webhooks.store.claim`). What the webhook pass's
    partial index reads; `params` keeps the URL for the API."""

    progress_percent: Mapped[float] = mapped_column(Float, default=0.0)
    progress_message: Mapped[str] = mapped_column(String(500), default="")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=4)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    """One entry per finished attempt: when it ran, how it ended, and why."""

    artifact_path: Mapped[str | None] = mapped_column(String(500), default=None)
    artifact_name: Mapped[str | None] = mapped_column(String(255), default=None)
    artifact_mime: Mapped[str | None] = mapped_column(String(100), default=None)
    artifact_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    artifact_sha256: Mapped[str | None] = mapped_column(String(64), default=None)

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)
    next_attempt_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    """The database's clock at the last status change or progress step (not a bare heartbeat):
    what the event watcher (`app.jobs.watch`) polls."""
    version: Mapped[int] = mapped_column(Integer, default=1)
    """Goes up by one with each status change and progress step: an event stream's id."""

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES
