"""The RQ entry point: the same `run_job`, with RQ's scheduler for delayed retries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from app.jobs.runner import run_job


def run(job_id: str) -> dict[str, Any]:
    outcome = run_job(job_id)
    if outcome.status == "retrying" and outcome.retry_in is not None:
        from rq import get_current_job

        current = get_current_job()
        if current is not None and current.origin:
            from rq import Queue

            Queue(current.origin, connection=current.connection).enqueue_in(
                timedelta(seconds=outcome.retry_in),
                run,
                job_id,
                job_timeout=current.timeout,
                result_ttl=current.result_ttl,
            )
    return {"job_id": job_id, "status": outcome.status, "attempt": outcome.attempt}
