"""What every Celery job task does: call `run_job`, then schedule what the outcome asks for.

Retries follow the one policy in Settings (applied by `run_job`), whatever the task: the
task only turns a `retrying` outcome into a delayed redelivery. If that publish fails, the
row stays `retrying` and the relay re-sends it when the broker is back. A database outage is
retried too: the message stays alive until the database answers.
"""

from __future__ import annotations

from typing import Any

from celery import Task
from sqlalchemy.exc import DBAPIError

from app.jobs.runner import run_job

DB_RETRY_MAX_SECONDS = 60


def execute(task: Task, job_id: str) -> dict[str, Any]:
    try:
        outcome = run_job(job_id)
    except DBAPIError as exc:
        # The database is unreachable (or a pooled connection died with it): keep the message
        # alive and try again, backing off up to a minute, rather than ack and drop it.
        delay = min(DB_RETRY_MAX_SECONDS, 2 ** (task.request.retries or 0))
        raise task.retry(exc=exc, countdown=delay, max_retries=None) from exc
    if outcome.status == "retrying" and outcome.retry_in is not None:
        raise task.retry(countdown=outcome.retry_in, max_retries=None)
    return {"job_id": job_id, "status": outcome.status, "attempt": outcome.attempt}
