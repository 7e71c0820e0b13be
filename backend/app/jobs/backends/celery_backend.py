"""Celery over Redis: the production backend."""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable

from kombu.exceptions import OperationalError

from app.core.config import Settings
from app.core.queues import QUEUES
from app.jobs.backends import redis_util
from app.jobs.backends.base import BackendUnavailable
from app.jobs.registry import JobKind

log = logging.getLogger(__name__)

CONSUMER_REPLY_SECONDS = 1.0
FRONT_PRIORITY = 0
NEW_PRIORITY = 3
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)  # kombu's Redis transport keeps one list per priority step
_UNACKED = "unacked"  # kombu's hash of delivered, not yet acknowledged messages
HELD_SCAN_LIMIT = 2000
"""Above this many messages on the broker, `held` does not read them (None: can't tell)."""


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
        self._declare: dict[str, list[object]] = {} if self._redis is None else {"declare": []}

    def publish(
        self, job_id: str, kind: JobKind, *, countdown: float = 0.0, front: bool = False
    ) -> None:
        """Send the job's task; the task id is the job id, so Flower and AsyncResult match.

        New work goes out at priority NEW_PRIORITY, a hand-back (`front`) at FRONT_PRIORITY:
        kombu's Redis transport keeps a list per priority step and workers pop the lower
        number first, so a job handed back after a crash runs before newer work.

        The message is Celery's own; two of its steps are done cheaper, a quarter of a
        publish's CPU (bench/README.md, "API hot paths"): the argument reprs its headers
        carry (Flower shows them) are the same text without `saferepr`, and on Redis the
        queue is not declared before each publish (kombu binds a copy of the queue and its
        exchange to do so): a direct queue's message goes straight to its list, and the
        workers declare the queues they consume."""
        try:
            self.app.send_task(
                kind.task_name,
                args=[job_id],
                task_id=job_id,
                queue=kind.queue,
                countdown=countdown or None,
                priority=FRONT_PRIORITY if front else NEW_PRIORITY,
                retry=False,  # a down broker must cost one bounded attempt, not a retry loop
                argsrepr=repr([job_id]),
                kwargsrepr="{}",
                **self._declare,
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
        for key in _queue_keys():
            pipe.llen(key)
        counts = pipe.execute()
        width = 1 + len(_PRIORITY_STEPS)
        return {
            queue: int(sum(counts[i * width : (i + 1) * width])) for i, queue in enumerate(QUEUES)
        }

    def consumers(self) -> dict[str, int] | None:
        """Ask the workers which queues they consume (a broadcast; replies within
        CONSUMER_REPLY_SECONDS). None when the broker does not answer; {} when no worker does."""
        try:
            replies = self.app.control.inspect(timeout=CONSUMER_REPLY_SECONDS).active_queues()
        except Exception as exc:  # the broker is down: cannot tell
            log.debug("could not ask Celery workers for their queues: %s", exc)
            return None
        counts: dict[str, int] = {}
        for queues in (replies or {}).values():
            for queue in queues or []:
                counts[queue["name"]] = counts.get(queue["name"], 0) + 1
        return counts

    def held(self, job_ids: Collection[str]) -> set[str] | None:
        """Read the waiting lists and the unacked hash (the task id is the job id)."""
        if self._redis is None:
            return None
        keys = _queue_keys()
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.llen(key)
        pipe.hlen(_UNACKED)
        if sum(pipe.execute()) > HELD_SCAN_LIMIT:
            return None
        for key in keys:
            pipe.lrange(key, 0, -1)
        pipe.hvals(_UNACKED)
        *waiting, unacked = pipe.execute()
        ids = _task_ids(raw for messages in waiting for raw in messages)
        ids |= _task_ids(raw for raw in unacked)
        return {job_id for job_id in job_ids if job_id in ids}


def _queue_keys() -> list[str]:
    """Every list kombu's Redis transport keeps for our queues, in QUEUES order."""
    return [
        key
        for queue in QUEUES
        for key in (queue, *(f"{queue}{_PRIORITY_SEP}{step}" for step in _PRIORITY_STEPS))
    ]


def _task_ids(raw_messages: Iterable[bytes]) -> set[str]:
    """Task ids of kombu envelopes (unacked entries wrap theirs in a list); others skipped."""
    ids = set()
    for raw in raw_messages:
        try:
            envelope = json.loads(raw)
            if isinstance(envelope, list):
                envelope = envelope[0]
            ids.add(str(envelope["headers"]["id"]))
        except (ValueError, KeyError, IndexError, TypeError):
            continue  # not a Celery message (e.g. something pushed by hand)
    return ids
