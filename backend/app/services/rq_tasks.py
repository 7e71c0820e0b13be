"""The RQ entry point: the same `run_job`, with RQ's scheduler for delayed retries.

`run` is the only function the project's RQ worker (`jobs/backends/rq_worker.py`) performs;
its one argument is the job id, and every message is JSON (`rq_backend.SERIALIZER`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from app.jobs.runner import run_job


def run(job_id: str) -> dict[str, Any]:
    outcome = run_job(job_id)
    if outcome.status == "retrying" and outcome.retry_in is not None:
        from rq import get_current_job

        from app.jobs.backends.rq_backend import RQ_ENTRY_POINT, queue

        current = get_current_job()
        if current is not None and current.origin:
            # The scheduler (`--with-scheduler`) moves it back onto the queue when due; the
            # same JSON serializer, the same entry point by name.
            queue(current.origin, current.connection).enqueue_in(
                timedelta(seconds=outcome.retry_in),
                RQ_ENTRY_POINT,
                job_id,
                job_timeout=current.timeout,
                result_ttl=current.result_ttl,
                failure_ttl=current.failure_ttl,
            )
    return {"job_id": job_id, "status": outcome.status, "attempt": outcome.attempt}
