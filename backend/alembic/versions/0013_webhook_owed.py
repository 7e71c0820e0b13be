"""The webhook pass reads only jobs that owe a first attempt (issue 16).

`webhooks/store.due` selected every job finished in the last day and tested
`params->>'webhook_url'` on each, a JSON path no index serves: about 250 ms per relay pass
with 290,000 jobs finished in a day. `report_jobs.webhook_url` holds the target while the
first attempt is owed (set with the row, cleared by the claim of attempt 1), and the partial
index `(status, finished_at) WHERE webhook_url IS NOT NULL` holds only those jobs. Its columns
are those of `ix_report_jobs_status_finished`: SQLite, without statistics, takes whichever
index serves the most conditions, and with equal columns the partial one (assumed smaller);
on `(finished_at)` alone it took `(status, finished_at)` and read every recent job again.

The backfill sets it for jobs with a `webhook_url` in their params and no delivery row yet.
`params` is JSON (not JSONB) on PostgreSQL; `->>` reads it as text on both types.

Revision ID: 0013_webhook_owed
Revises: 0012_scale_indexes
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0013_webhook_owed"
down_revision: str | None = "0012_scale_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OWED = sa.text("webhook_url IS NOT NULL")
_URL_OF = {
    "sqlite": "json_extract(params, '$.webhook_url')",
    "postgresql": "params ->> 'webhook_url'",
}


def upgrade() -> None:
    op.add_column("report_jobs", sa.Column("webhook_url", sa.String(2000), nullable=True))
    url = _URL_OF[op.get_bind().dialect.name]
    op.execute(
        f"UPDATE report_jobs SET webhook_url = {url} "
        f"WHERE {url} IS NOT NULL AND {url} <> '' AND NOT EXISTS "
        "(SELECT 1 FROM webhook_deliveries d WHERE d.job_id = report_jobs.id)"
    )
    op.create_index(
        "ix_report_jobs_webhook_owed",
        "report_jobs",
        ["status", "finished_at"],
        sqlite_where=_OWED,
        postgresql_where=_OWED,
    )


def downgrade() -> None:
    op.drop_index("ix_report_jobs_webhook_owed", table_name="report_jobs")
    with op.batch_alter_table("report_jobs") as batch:
        batch.drop_column("webhook_url")
