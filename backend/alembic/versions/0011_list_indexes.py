"""Indexes that serve a list page in index order, flat as the job table grows.

`GET /reports/jobs` orders by `created_at DESC, id`: with `id` in the index (and `status`
before `created_at` for a page filtered by status) the database reads the page off the
index and stops after `limit` rows, instead of sorting all of a user's jobs. They replace
(owner_id, created_at), (owner_id, status) and (created_at), of which each is a prefix.

Revision ID: 0011_list_indexes
Revises: 0010_schedules
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_list_indexes"
down_revision: str | None = "0010_schedules"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NEW = {
    "ix_report_jobs_owner_created_id": ["owner_id", "created_at", "id"],
    "ix_report_jobs_owner_status_created": ["owner_id", "status", "created_at", "id"],
}
_OLD = {
    "ix_report_jobs_owner_created": ["owner_id", "created_at"],
    "ix_report_jobs_owner_status": ["owner_id", "status"],
}


def upgrade() -> None:
    for name, columns in _NEW.items():
        op.create_index(name, "report_jobs", columns)
    for name in _OLD:
        op.drop_index(name, table_name="report_jobs")
    op.drop_index("ix_report_jobs_created", table_name="report_jobs")
    op.create_index("ix_report_jobs_created", "report_jobs", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_report_jobs_created", table_name="report_jobs")
    op.create_index("ix_report_jobs_created", "report_jobs", ["created_at"])
    for name, columns in _OLD.items():
        op.create_index(name, "report_jobs", columns)
    for name in _NEW:
        op.drop_index(name, table_name="report_jobs")
