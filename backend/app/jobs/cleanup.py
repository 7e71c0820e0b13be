"""Retention: finished jobs older than JOB_RETENTION_DAYS go, with their stored files."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete

from app.core.config import get_settings
from app.db.session import session_scope
from app.jobs import artifacts
from app.jobs.models import ReportJob
from app.jobs.store import sweeps
from app.storage import StorageError

log = logging.getLogger(__name__)


def cleanup_old_jobs(*, batch: int = 1000) -> dict[str, int]:
    """Delete objects first, then rows: a crash in between leaves a row without a file (the
    download answers 410, the next run deletes nothing and then the row), never an orphan
    object nobody can find. A job whose objects the store could not delete keeps its row,
    so the next run tries again."""
    settings = get_settings()
    removed = 0
    kept: set[str] = set()
    while True:
        with session_scope() as session:
            jobs = sweeps.old_finished(
                session=session,
                older_than=timedelta(days=settings.JOB_RETENTION_DAYS),
                limit=batch + len(kept),
            )
            found = [(job_id, job_type) for job_id, job_type in jobs if job_id not in kept]
        found = found[:batch]
        if not found:
            break
        ids = []
        for job_id, job_type in found:
            try:
                artifacts.remove_job_files(settings, job_id, job_type)
            except StorageError as exc:
                log.warning("cleanup: kept job %s, its files could not be deleted: %s", job_id, exc)
                kept.add(job_id)
                continue
            ids.append(job_id)
        if ids:
            with session_scope() as session:
                session.execute(delete(ReportJob).where(ReportJob.id.in_(ids)))
        removed += len(ids)
        if len(found) < batch:
            break
    return {"removed": removed, "kept": len(kept)}
