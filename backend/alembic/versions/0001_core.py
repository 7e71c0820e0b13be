"""Core tables: users, API tokens, report jobs.

Revision ID: 0001_core
Revises:
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0001_core"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS, nullable=True),
        sa.Column("revoked_at", TS, nullable=True),
    )
    op.create_index("ix_api_tokens_user_id", "api_tokens", ["user_id"])
    op.create_table(
        "report_jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("job_type", sa.String(40), nullable=False),
        sa.Column("queue", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("backend", sa.String(16), nullable=True),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("progress_percent", sa.Float, nullable=False),
        sa.Column("progress_message", sa.String(500), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("history", sa.JSON, nullable=False),
        sa.Column("artifact_path", sa.String(500), nullable=True),
        sa.Column("artifact_name", sa.String(255), nullable=True),
        sa.Column("artifact_mime", sa.String(100), nullable=True),
        sa.Column("artifact_size", sa.BigInteger, nullable=True),
        sa.Column("artifact_sha256", sa.String(64), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("queued_at", TS, nullable=True),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("next_attempt_at", TS, nullable=True),
    )
    op.create_index("ix_report_jobs_owner_created", "report_jobs", ["owner_id", "created_at"])
    op.create_index("ix_report_jobs_status_next", "report_jobs", ["status", "next_attempt_at"])
    op.create_index("ix_report_jobs_status_heartbeat", "report_jobs", ["status", "heartbeat_at"])


def downgrade() -> None:
    op.drop_table("report_jobs")
    op.drop_table("api_tokens")
    op.drop_table("users")
