"""`QUOTA_STORED_BYTES`: what one user keeps in the object store (results and uploads).

Checked before an upload and before a job that writes a file; a user over the limit gets 429
with a message that says what frees space (deleting uploads, results expiring after
`JOB_RETENTION_DAYS`) and a `Retry-After` of when their oldest result expires.

The total is a sum over the user's rows (job artifacts, datasets, documents). A total more
than `MAX_UPLOAD_BYTES` under the limit is remembered per process for `TOTAL_TTL_SECONDS`, so
most submissions cost no query; nearer the limit every check sums afresh. The limit may still
be passed by what one user's jobs write within that time: a guard against filling the store,
not a bill.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import TooManyRequestsError
from app.db.clock import db_now
from app.documents.models import Document
from app.jobs.models import ReportJob
from app.reports.models import Dataset

TOTAL_TTL_SECONDS = 10.0

_totals: dict[int, tuple[float, int]] = {}
_lock = threading.Lock()


class StorageQuotaExceeded(TooManyRequestsError):
    pass


def stored_bytes(session: Session, owner_id: int) -> int:
    """Bytes of `owner_id`'s job results, datasets and documents (a fresh sum)."""
    sums = [
        select(func.coalesce(func.sum(ReportJob.artifact_size), 0))
        .where(ReportJob.owner_id == owner_id)
        .scalar_subquery(),
        select(func.coalesce(func.sum(Dataset.size_bytes), 0))
        .where(Dataset.owner_id == owner_id)
        .scalar_subquery(),
        select(func.coalesce(func.sum(Document.size_bytes), 0))
        .where(Document.owner_id == owner_id)
        .scalar_subquery(),
    ]
    return sum(int(value or 0) for value in session.execute(select(*sums)).one())


def known_under(owner_id: int, settings: Settings) -> bool:
    """True when a remembered total already says `owner_id` is under the limit: the caller
    may skip `check_stored_bytes` (and the thread hop to its query) altogether."""
    limit = settings.QUOTA_STORED_BYTES
    if limit <= 0:
        return True
    with _lock:
        cached = _totals.get(owner_id)
    return (
        cached is not None
        and cached[0] > time.monotonic()
        and cached[1] + settings.MAX_UPLOAD_BYTES < limit
    )


def _recent_total(session: Session, owner_id: int, *, limit: int, headroom: int) -> int:
    """The user's total, remembered while it is more than `headroom` under `limit`."""
    now = time.monotonic()
    with _lock:
        cached = _totals.get(owner_id)
    if cached is not None and cached[0] > now and cached[1] + headroom < limit:
        return cached[1]
    total = stored_bytes(session, owner_id)
    with _lock:
        _totals[owner_id] = (now + TOTAL_TTL_SECONDS, total)
    return total


def forget(owner_id: int | None = None) -> None:
    """Drop remembered totals (all of them, or one user's): after a delete, and in tests."""
    with _lock:
        if owner_id is None:
            _totals.clear()
        else:
            _totals.pop(owner_id, None)


def check_stored_bytes(session: Session, owner_id: int, settings: Settings) -> None:
    """Raise StorageQuotaExceeded if `owner_id` already stores `QUOTA_STORED_BYTES` or more."""
    limit = settings.QUOTA_STORED_BYTES
    if limit <= 0:
        return
    total = _recent_total(session, owner_id, limit=limit, headroom=settings.MAX_UPLOAD_BYTES)
    if total < limit:
        return
    raise StorageQuotaExceeded(
        f"storage limit reached: you keep {_size(total)} of results and uploads, the limit is "
        f"{_size(limit)} (QUOTA_STORED_BYTES). Delete uploads you no longer need "
        "(DELETE /datasets/{id}, DELETE /documents/{id}); results are deleted "
        f"{settings.JOB_RETENTION_DAYS:g} days after their job was created.",
        retry_after=_until_oldest_result_expires(session, owner_id, settings),
    )


def _until_oldest_result_expires(session: Session, owner_id: int, settings: Settings) -> int:
    oldest, now = session.execute(
        select(func.min(ReportJob.created_at), db_now()).where(
            ReportJob.owner_id == owner_id, ReportJob.artifact_size.is_not(None)
        )
    ).one()
    if not isinstance(oldest, datetime) or not isinstance(now, datetime):
        return 3600
    expires = oldest + timedelta(days=settings.JOB_RETENTION_DAYS)
    return max(int((expires - now).total_seconds()) + 1, 60)


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"
