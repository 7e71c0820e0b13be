"""An expiry on API tokens (`reportctl token create NAME --expires-in 30d`).

Existing tokens get NULL: they never expire, as before.

Revision ID: 0006_token_expiry
Revises: 0005_mail_deliveries
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0006_token_expiry"
down_revision: str | None = "0005_mail_deliveries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("expires_at", TS, nullable=True))


def downgrade() -> None:
    # SQLite cannot drop a column in place: the batch copies the table.
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("expires_at")
