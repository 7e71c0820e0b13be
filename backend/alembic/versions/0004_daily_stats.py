"""Daily statistics reports (one row per day).

Revision ID: 0004_daily_stats
Revises: 0003_documents
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004_daily_stats"
down_revision: str | None = "0003_documents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "daily_stats",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("total_jobs", sa.Integer, nullable=False),
        sa.Column("completed", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("cancelled", sa.Integer, nullable=False),
        sa.Column("stats", sa.JSON, nullable=False),
        sa.Column("computed_at", TS, nullable=False),
        sa.Column("mailed_at", TS, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("daily_stats")
