"""A change stamp and counter on each job, for the live event streams.

`updated_at` (the database's clock) and `version` move with every status change
(`app/jobs/store/transitions.py`) and progress step (`app/jobs/heartbeat.py`); the API's
event watcher (`app/jobs/watch.py`) asks once per tick for the rows changed since, through
`ix_report_jobs_updated`. `ix_report_jobs_created` serves an admin's listing of all jobs.

Revision ID: 0009_job_events
Revises: 0008_webhook_deliveries
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0009_job_events"
down_revision: str | None = "0008_webhook_deliveries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("report_jobs") as batch:
        batch.add_column(sa.Column("updated_at", TS, nullable=True))
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    op.execute("UPDATE report_jobs SET updated_at = created_at")
    with op.batch_alter_table("report_jobs") as batch:
        batch.alter_column("updated_at", existing_type=TS, nullable=False)
    op.create_index("ix_report_jobs_updated", "report_jobs", ["updated_at"])
    op.create_index("ix_report_jobs_created", "report_jobs", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_report_jobs_created", table_name="report_jobs")
    op.drop_index("ix_report_jobs_updated", table_name="report_jobs")
    with op.batch_alter_table("report_jobs") as batch:
        batch.drop_column("version")
        batch.drop_column("updated_at")
