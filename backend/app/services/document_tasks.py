"""Document tasks (queue `documents`): OCR and thumbnails (`process_ocr`,
`generate_thumbnails`), generated from the job registry (`app.jobs.registry`)."""

from __future__ import annotations

from app.services.task_base import register_job_tasks

JOB_TASKS = register_job_tasks(__name__)
globals().update(JOB_TASKS)
