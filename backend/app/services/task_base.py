"""What every Celery job task does: call `run_job`, then schedule what the outcome asks for.

Retries follow the one policy in Settings (applied by `run_job`), whatever the task: the
task only turns a `retrying` outcome into a delayed redelivery. If that publish fails, the
row stays `retrying` and the relay re-sends it when the broker is back.
"""

from __future__ import annotations

from typing import Any

from celery import Task

from app.jobs.runner import run_job


def execute(task: Task, job_id: str) -> dict[str, Any]:
    outcome = run_job(job_id)
    if outcome.status == "retrying" and outcome.retry_in is not None:
        raise task.retry(countdown=outcome.retry_in, max_retries=None)
    return {"job_id": job_id, "status": outcome.status, "attempt": outcome.attempt}
