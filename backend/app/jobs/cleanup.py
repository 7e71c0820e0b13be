"""Retention: finished jobs older than JOB_RETENTION_DAYS go, with their files."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from app.core.config import get_settings
from app.core.db import session_scope
from app.jobs import artifacts, service
from app.models import ReportJob


def cleanup_old_jobs(*, batch: int = 1000) -> dict[str, int]:
    """Delete files first, then rows: a crash in between leaves a row without a file (the
    download answers 410), never an orphan file nobody can find."""
    settings = get_settings()
    removed = 0
    while True:
        with session_scope() as session:
            jobs = service.old_finished_jobs(
                session=session,
                older_than=timedelta(days=settings.JOB_RETENTION_DAYS),
                limit=batch,
            )
            ids = [job.id for job in jobs]
        if not ids:
            break
        for job_id in ids:
            artifacts.remove_job_files(settings, job_id)
        with session_scope() as session:
            session.execute(delete(ReportJob).where(ReportJob.id.in_(ids)))
        removed += len(ids)
        if len(ids) < batch:
            break
    return {"removed": removed}
