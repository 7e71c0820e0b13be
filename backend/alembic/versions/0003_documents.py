"""Uploaded documents (OCR and thumbnail jobs work on them).

Revision ID: 0003_documents
Revises: 0002_datasets
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0003_documents"
down_revision: str | None = "0002_datasets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "documents",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "owner_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("filename", sa.String(255), nullable=False),
        sa.Column("mime_type", sa.String(100), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("pages", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_documents_owner_created", "documents", ["owner_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_documents_owner_created", table_name="documents")
    op.drop_table("documents")
