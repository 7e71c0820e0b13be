"""The `daily_stats` table: one row per day, the statistics report of that day's jobs.

Stored (not only mailed) so the numbers stay available after old jobs are cleaned up.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, Integer
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, utcnow


class DailyStats(Base):
    __tablename__ = "daily_stats"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    """UTC day whose jobs (by creation time) these numbers describe."""
    total_jobs: Mapped[int] = mapped_column(Integer, default=0)
    completed: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """The whole report: counts by type and status, p50/p95 durations, top failures."""
    computed_at: Mapped[datetime] = mapped_column(default=utcnow)
    mailed_at: Mapped[datetime | None] = mapped_column(default=None)
