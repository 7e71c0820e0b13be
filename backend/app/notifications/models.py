"""The `mail_deliveries` table: what each e-mail job did for each recipient (`ledger.py`).

In the database rather than in a file under the storage root, so that a retry that lands on
another host still knows who was already sent. One row per (job, recipient key); the row
whose key is `LEASE_KEY` is the job's send lease (which attempt may send now). Rows go with
their job (ON DELETE CASCADE), so retention needs no cleanup of its own.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, utcnow

LEASE_KEY = ""
"""No recipient key is empty: bulk keys are addresses, single sends name their message."""


class MailDelivery(Base):
    __tablename__ = "mail_deliveries"

    job_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("report_jobs.id", ondelete="CASCADE"), primary_key=True
    )
    recipient: Mapped[str] = mapped_column(String(320), primary_key=True)
    """The lower-cased address (bulk), or the message's key (a single send)."""
    status: Mapped[str] = mapped_column(String(16))
    """sending | sent | failed | deferred | unknown; the lease row: held | free."""
    attempt: Mapped[int] = mapped_column(Integer)
    """The job attempt that wrote this status (for the lease: that holds or last held it)."""
    code: Mapped[int | None] = mapped_column(Integer, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
