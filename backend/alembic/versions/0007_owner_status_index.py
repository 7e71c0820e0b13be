"""An index on (owner_id, status) for the per-user quotas and fair shares.

`app/jobs/admission.py` counts a user's active and waiting jobs on every submission, and the
relay counts each waiting user's active jobs: both by owner and status.

Revision ID: 0007_owner_status_index
Revises: 0006_token_expiry
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007_owner_status_index"
down_revision: str | None = "0006_token_expiry"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_report_jobs_owner_status", "report_jobs", ["owner_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_report_jobs_owner_status", table_name="report_jobs")
