"""Report tasks (queue `reports`). Thin: the work is in `app.jobs.runner` and `app.reports`.

The job tasks (`generate_dummy_report`, `generate_heavy_report`) are generated from the job
registry (`app.jobs.registry`); the housekeeping task is defined here.
"""

from __future__ import annotations

from app.core.celery_app import celery_app
from app.jobs.cleanup import cleanup_old_jobs
from app.services.task_base import register_job_tasks

JOB_TASKS = register_job_tasks(__name__)
globals().update(JOB_TASKS)


@celery_app.task(name="app.services.celery_report_tasks.cleanup_old_report_jobs")
def cleanup_old_report_jobs() -> dict[str, int]:
    """Remove finished jobs older than JOB_RETENTION_DAYS, with their files."""
    return cleanup_old_jobs()
