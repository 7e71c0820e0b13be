"""Retention: finished jobs older than JOB_RETENTION_DAYS go, with their files."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete

from app.core.config import get_settings
from app.db.session import session_scope
from app.jobs import artifacts
from app.jobs.models import ReportJob
from app.jobs.store import sweeps


def cleanup_old_jobs(*, batch: int = 1000) -> dict[str, int]:
    """Delete files first, then rows: a crash in between leaves a row without a file (the
    download answers 410), never an orphan file nobody can find."""
    settings = get_settings()
    removed = 0
    while True:
        with session_scope() as session:
            jobs = sweeps.old_finished_jobs(
                session=session,
                older_than=timedelta(days=settings.JOB_RETENTION_DAYS),
                limit=batch,
            )
            found = [(job.id, job.job_type) for job in jobs]
        ids = [job_id for job_id, _ in found]
        if not ids:
            break
        for job_id, job_type in found:
            artifacts.remove_job_files(settings, job_id, job_type)
        with session_scope() as session:
            session.execute(delete(ReportJob).where(ReportJob.id.in_(ids)))
        removed += len(ids)
        if len(ids) < batch:
            break
    return {"removed": removed}
