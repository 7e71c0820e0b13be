"""RQ over Redis: the first fallback for light jobs when Celery is unavailable."""

from __future__ import annotations

from collections.abc import Collection
from datetime import timedelta

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from app.core.config import Settings
from app.core.queues import QUEUES
from app.jobs.backends import redis_util
from app.jobs.backends.base import BackendUnavailable
from app.jobs.registry import JobKind

RQ_ENTRY_POINT = "app.services.rq_tasks.run"
_WILL_RUN = frozenset({"queued", "deferred", "scheduled", "started"})
"""The one function an RQ worker of this project runs (`rq_worker.GuardedWorker`)."""

SERIALIZER = JSONSerializer
"""Every RQ message is JSON, both ways: a pickle payload never decodes, so never runs."""


def queue(name: str, connection: Redis) -> Queue:
    """An RQ queue speaking this project's serializer (publisher, retries, worker)."""
    return Queue(name, connection=connection, serializer=SERIALIZER)


class RqBackend:
    name = "rq"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = redis_util.client(
            settings.RQ_REDIS_URL, settings.BROKER_PUBLISH_TIMEOUT_SECONDS
        )

    def _queue(self, name: str) -> Queue:
        return queue(name, self.redis)

    def publish(
        self, job_id: str, kind: JobKind, *, countdown: float = 0.0, front: bool = False
    ) -> None:
        target = self._queue(kind.queue)
        options = {
            "job_id": job_id,
            "job_timeout": self.settings.JOB_HARD_TIME_LIMIT_SECONDS,
            "result_ttl": int(self.settings.JOB_RETENTION_DAYS * 86400),
            "failure_ttl": int(self.settings.JOB_RETENTION_DAYS * 86400),
        }
        try:
            if countdown:
                target.enqueue_in(timedelta(seconds=countdown), RQ_ENTRY_POINT, job_id, **options)
            else:
                target.enqueue(RQ_ENTRY_POINT, job_id, at_front=front, **options)
        except (RedisError, OSError) as exc:
            raise BackendUnavailable(f"RQ Redis unreachable: {exc}") from exc

    def ping(self) -> bool:
        return bool(self.redis.ping())

    def live_state(self, job_id: str) -> str | None:
        try:
            return str(Job.fetch(job_id, connection=self.redis, serializer=SERIALIZER).get_status())
        except NoSuchJobError:
            return "missing"

    def queue_lengths(self) -> dict[str, int]:
        return {name: self._queue(name).count for name in QUEUES}

    def consumers(self) -> dict[str, int] | None:
        """RQ workers register themselves in Redis with their queues: one read."""
        try:
            workers = Worker.all(connection=self.redis)
        except (RedisError, OSError):
            return None
        counts: dict[str, int] = {}
        for worker in workers:
            for name in worker.queue_names():
                counts[name] = counts.get(name, 0) + 1
        return counts

    def held(self, job_ids: Collection[str]) -> set[str] | None:
        """The jobs RQ will still run: a hash per enqueued job (the job id is ours) whose
        status is waiting or running. A hash that says failed, finished, stopped or canceled
        (a refused message, a work-horse that died) holds nothing any more."""
        ordered = list(job_ids)
        pipe = self.redis.pipeline(transaction=False)
        for job_id in ordered:
            pipe.hget(Job.key_for(job_id), "status")
        statuses = pipe.execute()
        return {
            job_id
            for job_id, status in zip(ordered, statuses, strict=True)
            if status is not None and status.decode() in _WILL_RUN
        }
