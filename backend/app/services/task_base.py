"""The Celery job tasks, generated from the job registry: one definition for every kind.

Each task calls `run_job`, then schedules what the outcome asks for.

Retries follow the one policy in Settings (applied by `run_job`), whatever the task: the
task only turns a `retrying` outcome into a delayed redelivery. If that publish fails, the
row stays `retrying` and the relay re-sends it when the broker is back. A database outage is
retried too: the message stays alive until the database answers.
"""

from __future__ import annotations

from fnmatch import fnmatch
from typing import Any, cast

from celery import Task, signals
from sqlalchemy.exc import DBAPIError

from app.core.celery_app import TASK_ROUTES, celery_app
from app.jobs.registry import KINDS, initialise_metrics
from app.jobs.runner import run_job

DB_RETRY_MAX_SECONDS = 60


@signals.worker_ready.connect
def _initialise_metrics(**_: Any) -> None:
    """The worker's endpoint shows every kind's series from the start (the main process is an
    instance by now: `metrics_celery` set it up at worker_init, before the pool forked)."""
    initialise_metrics()


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


def register_job_tasks(module: str) -> dict[str, Task]:
    """Register the task of every job kind whose task lives in `module`, by its full name.

    The names are the ones queued messages, beat and Flower know; the function is the same
    for all. A kind whose queue differs from its module's route is a registry bug, refused
    here rather than routed to a queue no worker of that kind consumes.
    """
    tasks: dict[str, Task] = {}
    for kind in KINDS.values():
        owner, _, attr = kind.task_name.rpartition(".")
        if owner != module or attr in tasks:
            continue
        routed = [r["queue"] for glob, r in TASK_ROUTES.items() if fnmatch(kind.task_name, glob)]
        if routed[:1] != [kind.queue]:
            raise RuntimeError(f"{kind.task_name} is routed to {routed}, its kind to {kind.queue}")
        tasks[attr] = cast(Task, celery_app.task(bind=True, name=kind.task_name)(execute))
    return tasks
