"""The baseline: a bare Celery app with the same reliability settings as ours, no DB."""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

BROKER = os.environ["BENCH_BROKER_URL"]
app = Celery("bare", broker=BROKER)
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue="bare",
    task_ignore_result=True,
    worker_hijack_root_logger=False,
)
_redis = redis.Redis.from_url(BROKER)


@app.task(name="bare.noop")
def noop(submitted_at: float) -> None:
    """Record when it started (for latency) and count itself (for throughput)."""
    pipe = _redis.pipeline()
    pipe.rpush("bare:latency", time.time() - submitted_at)
    pipe.incr("bare:done")
    pipe.execute()
