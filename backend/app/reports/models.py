"""The `datasets` table: files uploaded to build heavy reports from.

The stored file is always Parquet: a CSV upload is parsed once, at upload, with the column
types sniffed from the whole file, and converted, so every report afterwards scans columns
instead of re-parsing text. `format` records what was uploaded; `path` is relative to the
storage root, so the volume can move.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, new_id, utcnow
from app.users.models import User


class Dataset(Base):
    __tablename__ = "datasets"
    __table_args__ = (Index("ix_datasets_owner_created", "owner_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    owner_id: Mapped[int] = mapped_column(ForeignKey(User.id, ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    """As the client named it (display only; never used to build a path)."""
    format: Mapped[str] = mapped_column(String(16))
    """What was uploaded: "csv" or "parquet"."""
    path: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    """Size of the upload as sent."""
    columns: Mapped[dict[str, Any]] = mapped_column(JSON)
    """Column name -> DuckDB type, in file order."""
    row_count: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
