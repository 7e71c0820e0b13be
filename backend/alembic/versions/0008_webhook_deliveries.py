"""Completion webhooks: one row per delivery attempt, and an index on report_jobs.finished_at
for the pass that finds recently finished jobs with a webhook (`app/webhooks/store.py`).

Revision ID: 0008_webhook_deliveries
Revises: 0007_owner_status_index
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0008_webhook_deliveries"
down_revision: str | None = "0007_owner_status_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "job_id",
            sa.String(36),
            sa.ForeignKey("report_jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("id", sa.String(36), nullable=False, unique=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer, nullable=True),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("delivered", sa.Boolean, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_webhook_deliveries_next", "webhook_deliveries", ["next_attempt_at"])
    op.create_index("ix_report_jobs_finished", "report_jobs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_report_jobs_finished", table_name="report_jobs")
    op.drop_index("ix_webhook_deliveries_next", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
