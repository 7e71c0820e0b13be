"""The e-mail ledger in the database: one row per job and recipient (was a file per job).

Revision ID: 0005_mail_deliveries
Revises: 0004_daily_stats
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0005_mail_deliveries"
down_revision: str | None = "0004_daily_stats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "mail_deliveries",
        sa.Column(
            "job_id",
            sa.String(36),
            sa.ForeignKey("report_jobs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("recipient", sa.String(320), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("mail_deliveries")
