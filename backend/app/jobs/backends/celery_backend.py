"""Celery over Redis: the production backend."""

from __future__ import annotations

import logging

from kombu.exceptions import OperationalError

from app.core.config import Settings
from app.jobs.backends import redis_util
from app.jobs.backends.base import BackendUnavailable
from app.jobs.registry import QUEUES, JobKind

log = logging.getLogger(__name__)

_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)  # kombu's Redis transport keeps one list per priority step


class CeleryBackend:
    name = "celery"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        from app.core.celery_app import create_celery

        # Our own apps from these settings (the module-level one reads the environment).
        self.app = create_celery(settings, publisher=True)
        self.results = create_celery(settings) if settings.CELERY_RESULT_BACKEND else None
        self._redis = (
            redis_util.client(settings.CELERY_BROKER_URL, settings.BROKER_PUBLISH_TIMEOUT_SECONDS)
            if settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
            else None
        )

    def publish(self, job_id: str, kind: JobKind, *, countdown: float = 0.0) -> None:
        """Send the job's task; the task id is the job id, so Flower and AsyncResult match."""
        try:
            self.app.send_task(
                kind.task_name,
                args=[job_id],
                task_id=job_id,
                queue=kind.queue,
                countdown=countdown or None,
                retry=False,  # a down broker must cost one bounded attempt, not a retry loop
            )
        except (OperationalError, OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"Celery broker unreachable: {exc}") from exc

    def ping(self) -> bool:
        if self._redis is not None:
            return bool(self._redis.ping())
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(
                max_retries=1, timeout=self.settings.BROKER_PUBLISH_TIMEOUT_SECONDS
            )
        return True

    def live_state(self, job_id: str) -> str | None:
        if self.results is None:
            return None
        state = self.results.AsyncResult(job_id).state
        return str(state) if state else None

    def queue_lengths(self) -> dict[str, int]:
        if self._redis is None:
            return {}
        pipe = self._redis.pipeline()
        for queue in QUEUES:
            pipe.llen(queue)
            for step in _PRIORITY_STEPS:
                pipe.llen(f"{queue}{_PRIORITY_SEP}{step}")
        counts = pipe.execute()
        width = 1 + len(_PRIORITY_STEPS)
        return {
            queue: int(sum(counts[i * width : (i + 1) * width])) for i, queue in enumerate(QUEUES)
        }
