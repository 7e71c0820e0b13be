"""The `schedules` and `schedule_firings` tables.

A schedule is a duty of the service (`kind='duty'`: cleanup, health check, daily statistics;
seeded by name at the first tick) or a user's report (`kind='report'`). `next_due_at` is when
it is next due, by the database's clock. Each firing is a row keyed by (schedule, due time):
any number of processes may tick at once, and the unique key lets exactly one of them fire
each due time (`app.schedules.tick`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, new_id, utcnow
from app.jobs.models import ReportJob
from app.users.models import User

DUTY = "duty"
REPORT = "report"


class Schedule(Base):
    __tablename__ = "schedules"
    __table_args__ = (
        Index("ix_schedules_due", "paused", "next_due_at"),
        Index("ix_schedules_owner", "owner_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey(User.id, ondelete="CASCADE"), default=None
    )
    cron: Mapped[str | None] = mapped_column(String(200), default=None)
    interval_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """A duty: `{"duty": name}`. A report: the job type and its job params."""
    paused: Mapped[bool] = mapped_column(Boolean, default=False)
    paused_reason: Mapped[str | None] = mapped_column(Text, default=None)
    next_due_at: Mapped[datetime]
    last_fired_at: Mapped[datetime | None] = mapped_column(default=None)
    last_outcome: Mapped[str | None] = mapped_column(Text, default=None)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScheduleFiring(Base):
    __tablename__ = "schedule_firings"
    __table_args__ = (
        UniqueConstraint("schedule_id", "due_at", name="uq_schedule_firings_due"),
        Index("ix_schedule_firings_job", "job_id"),
        # The unsettled firings alone (app/schedules/tick.py: settle): the pass starts from
        # them, not from the finished jobs, however many there are (migration 0012).
        Index(
            "ix_schedule_firings_unsettled",
            "outcome",
            "job_id",
            sqlite_where=text("outcome IS NULL"),
            postgresql_where=text("outcome IS NULL"),
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    schedule_id: Mapped[str] = mapped_column(ForeignKey(Schedule.id, ondelete="CASCADE"))
    due_at: Mapped[datetime]
    fired_at: Mapped[datetime]
    missed: Mapped[int] = mapped_column(Integer, default=0)
    """Earlier due times this one run stands for (downtime: one catch-up run, never a burst)."""
    manual: Mapped[bool] = mapped_column(Boolean, default=False)
    """`POST /schedules/{id}/run`: due now, outside the schedule's own times."""
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey(ReportJob.id, ondelete="SET NULL"), default=None
    )
    outcome: Mapped[str | None] = mapped_column(Text, default=None)
    """NULL while a report's job is live; then `completed`, `failed: ...`, or a duty's result."""
