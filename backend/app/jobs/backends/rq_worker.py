"""The project's RQ worker: it performs `app.services.rq_tasks.run(job_id)` and nothing else.

A stock `rq worker` imports and calls whatever function a message names and unpickles
whatever payload it carries, so anyone who can write to its Redis runs code as the worker.
This one decodes every message as JSON (`rq_backend.SERIALIZER`: a pickle payload fails to
decode, nothing in it runs) and, before a work horse is forked, checks what the message asks
for: the entry point by name, one job id, no keyword arguments, no instance, no callbacks and
no webhooks. Anything else is logged (function and queue) and moved to the failed registry
without importing or calling anything it names. `GuardedJob` repeats the check where RQ
resolves a function, and never resolves a callback, in case another code path reaches one.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from typing import Any

from redis import Redis
from rq.exceptions import DeserializationError
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.worker import Worker

from app.jobs.backends.rq_backend import RQ_ENTRY_POINT, SERIALIZER

log = logging.getLogger(__name__)

MAX_JOB_ID_LENGTH = 64


class RefusedJob(Exception):
    """A message this worker will not perform."""


def refusal(job: Job) -> str | None:
    """Why `job` may not run on this worker, or None when it is one of ours."""
    try:
        func_name, instance, args, kwargs = job.func_name, job.instance, job.args, job.kwargs
    except DeserializationError:
        return "its payload does not decode as JSON (a pickle?); nothing in it was loaded"
    if func_name != RQ_ENTRY_POINT:
        return f"function {func_name!r} is not {RQ_ENTRY_POINT}"
    if (
        instance is not None
        or kwargs
        or not isinstance(args, list | tuple)
        or len(args) != 1
        or not isinstance(args[0], str)
        or not 0 < len(args[0]) <= MAX_JOB_ID_LENGTH
    ):
        return f"{RQ_ENTRY_POINT} takes one job id, not args={args!r:.200} kwargs={kwargs!r:.200}"
    callbacks = [
        name
        for name in (
            getattr(job, "_success_callback_name", None),
            getattr(job, "_failure_callback_name", None),
            getattr(job, "_stopped_callback_name", None),
        )
        if name
    ]
    if callbacks:
        return f"it names callbacks {callbacks!r}"
    if job.webhooks:
        return "it carries webhooks"
    return None


class GuardedJob(Job):
    """A job that resolves only the entry point and never a callback or a webhook."""

    @property
    def func(self) -> Any:
        reason = refusal(self)
        if reason is not None:
            raise RefusedJob(reason)
        return super().func

    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None

    def send_webhooks(self, *args: Any, **kwargs: Any) -> None:
        return None


class GuardedWorker(Worker):
    """A forking RQ worker, JSON only, that refuses every message but the entry point's."""

    job_class = GuardedJob

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Whatever a command line asks for: the serializer and the job class are ours.
        kwargs["serializer"] = SERIALIZER
        kwargs["job_class"] = GuardedJob
        super().__init__(*args, **kwargs)

    def execute_job(self, job: Job, queue: Queue) -> None:
        reason = refusal(job)
        if reason is None:
            super().execute_job(job, queue)
            return
        self.log.warning(
            "Worker %s: REFUSED job %s on queue %s (description %.200r): %s",
            self.name,
            job.id,
            queue.name,
            job.description,
            reason,
        )
        self._refuse(job, queue, reason)

    def _refuse(self, job: Job, queue: Queue, reason: str) -> None:
        """Into the failed registry, never performed; a hash too odd to save is deleted."""
        try:
            with self.connection.pipeline() as pipe:
                pipe.lrem(queue.intermediate_queue_key, 1, job.id)
                job.set_status(JobStatus.FAILED, pipeline=pipe)
                job.failed_job_registry.add(
                    job, ttl=job.failure_ttl, exc_string=f"refused: {reason}", pipeline=pipe
                )
                self.increment_failed_job_count(pipe)
                pipe.execute()
        except Exception:
            self.log.warning("Worker %s: deleting refused job %s", self.name, job.id, exc_info=True)
            with self.connection.pipeline() as pipe:
                pipe.lrem(queue.intermediate_queue_key, 1, job.id)
                pipe.delete(job.key)
                pipe.execute()


def run_worker(
    url: str, queues: Sequence[str], *, with_scheduler: bool = True, logging_level: str = "INFO"
) -> int:
    """Work `queues` until told to stop (TERM: warm shutdown); the scheduler moves due retries."""
    # Every job runs in a fork of this process: import the one entry point (and with it the
    # job machinery and the database driver) once, here, instead of in every fork.
    importlib.import_module(RQ_ENTRY_POINT.rpartition(".")[0])
    connection = Redis.from_url(url)
    worker = GuardedWorker(list(queues), connection=connection)
    worker.work(with_scheduler=with_scheduler, logging_level=logging_level)
    return 0
