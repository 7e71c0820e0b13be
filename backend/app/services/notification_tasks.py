"""Notification tasks (queue `notifications`): one e-mail and bulk e-mail (`send_email`,
`send_bulk_email`), generated from the job registry (`app.jobs.registry`)."""

from __future__ import annotations

from app.services.task_base import register_job_tasks

JOB_TASKS = register_job_tasks(__name__)
globals().update(JOB_TASKS)
