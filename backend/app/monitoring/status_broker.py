"""The broker's half of the status screen (`app.monitoring.status`): the Celery workers that
answer a broadcast with the queues each consumes, the messages each queue holds, and the RQ
workers registered in Redis. Every call is bounded: a broker that refuses, times out or hangs
is a state with its reason, never a hang.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from app.core.config import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
WHY_CHARS = 120


@dataclass(frozen=True)
class Worker:
    name: str
    kind: str
    """`celery` or `rq`."""
    queues: tuple[str, ...]


@dataclass(frozen=True)
class BrokerView:
    state: str
    """`up`, `unreachable` or `not configured`."""
    detail: str = ""
    """Why it is unreachable."""
    workers: tuple[Worker, ...] = ()
    messages: dict[str, int] = field(default_factory=dict)
    rq_state: str = "not configured"
    """The RQ Redis server's, the same way (`unreachable: why`)."""

    @property
    def up(self) -> bool:
        return self.state == "up"

    @property
    def consumers_known(self) -> bool:
        """Every configured broker answered (so a queue without workers has none)."""
        states = (self.state, self.rq_state)
        return "up" in states and all(s in ("up", "not configured") for s in states)


class _Background(Generic[T]):
    """`call()` in a daemon thread, so a client that outlives its own timeouts (kombu may
    retry a connection on its own) holds up neither the screen nor the exit."""

    def __init__(self, call: Callable[[], T]) -> None:
        self._call = call
        self._box: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, name="status-broker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._box["value"] = self._call()
        except BaseException as exc:
            self._box["error"] = exc

    def result(self, seconds: float) -> T:
        self._thread.join(seconds)
        if self._thread.is_alive():
            raise TimeoutError(f"no answer within {seconds:g} s")
        if "error" in self._box:
            raise self._box["error"]
        return self._box["value"]  # type: ignore[no-any-return]


def why(exc: BaseException) -> str:
    """An error as one short line."""
    text = " ".join((str(exc) or type(exc).__name__).split())
    return text if len(text) <= WHY_CHARS else text[: WHY_CHARS - 1] + "…"


def broker_view(settings: Settings, timeout: float) -> BrokerView:
    """Celery's workers and messages; RQ's workers, read meanwhile."""
    guard = timeout + settings.BROKER_PUBLISH_TIMEOUT_SECONDS + 1.0
    rq = _Background(lambda: _rq_workers(settings))
    celery = _celery_view(settings, timeout, guard)
    try:
        rq_workers, rq_state = rq.result(guard)
    except TimeoutError as exc:
        rq_workers, rq_state = (), f"unreachable: {exc}"
    return dataclasses.replace(celery, workers=celery.workers + rq_workers, rq_state=rq_state)


def _celery_view(settings: Settings, timeout: float, guard: float) -> BrokerView:
    if not settings.CELERY_BROKER_URL:
        return BrokerView("not configured")
    from app.jobs.backends.celery_backend import CeleryBackend

    backend = CeleryBackend(settings)
    try:
        _Background(backend.ping).result(guard)
        messages = _Background(backend.queue_lengths).result(guard)
        replies = _Background(
            lambda: backend.app.control.inspect(timeout=timeout).active_queues()
        ).result(guard)
    except Exception as exc:  # any failure of the broker or its client: say it, go on
        log.debug("Celery broker unreachable", exc_info=True)
        return BrokerView("unreachable", why(exc))
    workers = tuple(
        Worker(name, "celery", tuple(sorted(q["name"] for q in queues or [])))
        for name, queues in sorted((replies or {}).items())
    )
    return BrokerView("up", workers=workers, messages=messages)


def _rq_workers(settings: Settings) -> tuple[tuple[Worker, ...], str]:
    """The RQ workers registered in Redis, with their queues."""
    if not settings.RQ_REDIS_URL:
        return (), "not configured"
    from rq import Worker as RqWorker

    from app.jobs.backends import redis_util

    client = redis_util.client(settings.RQ_REDIS_URL, settings.BROKER_PUBLISH_TIMEOUT_SECONDS)
    try:
        found = RqWorker.all(connection=client)
        workers = [Worker(str(w.name), "rq", tuple(sorted(w.queue_names()))) for w in found]
    except Exception as exc:  # as above: the RQ Redis is down
        return (), f"unreachable: {why(exc)}"
    finally:
        client.close()
    return tuple(sorted(workers, key=lambda w: w.name)), "up"
