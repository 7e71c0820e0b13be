"""Indexes that keep the periodic passes flat as the job table grows (issue 16).

With a million finished jobs, a relay pass and a cleanup took hundreds of milliseconds: each
query had `status IN (...)` beside a time range, and the planner (SQLite always, PostgreSQL
before its statistics catch up) took the status prefix of `(status, heartbeat_at)` and read
every finished job. With the time column behind `status` both conditions bound the scan:

- `(status, created_at)`: cleanup's finished jobs past the retention window.
- `(status, finished_at)`: the recently finished jobs a webhook may be due for, and the
  status screen's recent failures. It replaces `(finished_at)`, whose every query also
  names the status.
- `schedule_firings (outcome, job_id) WHERE outcome IS NULL`: the unsettled firings, so the
  settle pass starts from the few firings and looks their jobs up by id, instead of
  walking every finished job.

Revision ID: 0012_scale_indexes
Revises: 0011_list_indexes
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0012_scale_indexes"
down_revision: str | None = "0011_list_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNSETTLED = sa.text("outcome IS NULL")


def upgrade() -> None:
    op.create_index("ix_report_jobs_status_created", "report_jobs", ["status", "created_at"])
    op.create_index("ix_report_jobs_status_finished", "report_jobs", ["status", "finished_at"])
    op.drop_index("ix_report_jobs_finished", table_name="report_jobs")
    op.create_index(
        "ix_schedule_firings_unsettled",
        "schedule_firings",
        ["outcome", "job_id"],
        sqlite_where=_UNSETTLED,
        postgresql_where=_UNSETTLED,
    )


def downgrade() -> None:
    op.drop_index("ix_schedule_firings_unsettled", table_name="schedule_firings")
    op.create_index("ix_report_jobs_finished", "report_jobs", ["finished_at"])
    op.drop_index("ix_report_jobs_status_finished", table_name="report_jobs")
    op.drop_index("ix_report_jobs_status_created", table_name="report_jobs")
