"""The embedded executor's poll reads its next jobs off an index (issue 16).

`sweeps.runnable_local` asked for `backend = 'local' AND (queued OR retrying and due)` in
`queued_at` order: SQLite answered from `(status, ...)` indexes and sorted every queued job,
on every poll, and the executor polls after every job. With 1,000 jobs queued that was about
a millisecond per job (in-process, this VM), growing with the backlog. The partial index
`(status, queued_at, created_at) WHERE backend = 'local'` holds only the executor's jobs, in
the poll's order, so a poll reads the few rows it returns.

Revision ID: 0014_local_queue_index
Revises: 0013_webhook_owed
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0014_local_queue_index"
down_revision: str | None = "0013_webhook_owed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LOCAL = sa.text("backend = 'local'")


def upgrade() -> None:
    op.create_index(
        "ix_report_jobs_local_queue",
        "report_jobs",
        ["status", "queued_at", "created_at"],
        sqlite_where=_LOCAL,
        postgresql_where=_LOCAL,
    )


def downgrade() -> None:
    op.drop_index("ix_report_jobs_local_queue", table_name="report_jobs")
