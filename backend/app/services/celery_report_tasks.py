"""Report tasks (queue `reports`). Thin: the work is in `app.jobs.runner` and `app.reports`."""

from __future__ import annotations

from typing import Any

from celery import Task

from app.core.celery_app import celery_app
from app.jobs.cleanup import cleanup_old_jobs
from app.services.task_base import execute


@celery_app.task(bind=True, name="app.services.celery_report_tasks.generate_dummy_report")
def generate_dummy_report(self: Task, job_id: str) -> dict[str, Any]:
    return execute(self, job_id)


@celery_app.task(bind=True, name="app.services.celery_report_tasks.generate_heavy_report")
def generate_heavy_report(self: Task, job_id: str) -> dict[str, Any]:
    """PDF, Excel or analysis report, by the job's type."""
    return execute(self, job_id)


@celery_app.task(name="app.services.celery_report_tasks.cleanup_old_report_jobs")
def cleanup_old_report_jobs() -> dict[str, int]:
    """Remove finished jobs older than JOB_RETENTION_DAYS, with their files."""
    return cleanup_old_jobs()
