"""Schedules: the periodic duties and users' report schedules (`app/schedules/models.py`), and
one row per firing, unique on (schedule, due time) so that concurrent tickers fire it once.

Revision ID: 0010_schedules
Revises: 0009_job_events
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0010_schedules"
down_revision: str | None = "0009_job_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column(
            "owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("cron", sa.String(200), nullable=True),
        sa.Column("interval_seconds", sa.Integer, nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("paused", sa.Boolean, nullable=False),
        sa.Column("paused_reason", sa.Text, nullable=True),
        sa.Column("next_due_at", TS, nullable=False),
        sa.Column("last_fired_at", TS, nullable=True),
        sa.Column("last_outcome", sa.Text, nullable=True),
        sa.Column("consecutive_failures", sa.Integer, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_schedules_due", "schedules", ["paused", "next_due_at"])
    op.create_index("ix_schedules_owner", "schedules", ["owner_id", "created_at"])
    op.create_table(
        "schedule_firings",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "schedule_id",
            sa.String(64),
            sa.ForeignKey("schedules.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("fired_at", TS, nullable=False),
        sa.Column("missed", sa.Integer, nullable=False),
        sa.Column("manual", sa.Boolean, nullable=False),
        sa.Column(
            "job_id",
            sa.String(36),
            sa.ForeignKey("report_jobs.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("outcome", sa.Text, nullable=True),
        sa.UniqueConstraint("schedule_id", "due_at", name="uq_schedule_firings_due"),
    )
    op.create_index("ix_schedule_firings_job", "schedule_firings", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_schedule_firings_job", table_name="schedule_firings")
    op.drop_table("schedule_firings")
    op.drop_index("ix_schedules_owner", table_name="schedules")
    op.drop_index("ix_schedules_due", table_name="schedules")
    op.drop_table("schedules")
