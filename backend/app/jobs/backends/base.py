"""What a queue backend must offer, and the health cache + circuit breaker in front of it."""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from typing import Protocol

from app.jobs.registry import JobKind


class BackendUnavailable(RuntimeError):
    """The backend could not take the job within the publish timeout."""


class Backend(Protocol):
    name: str

    def publish(
        self, job_id: str, kind: JobKind, *, countdown: float = 0.0, front: bool = False
    ) -> None:
        """Hand the job to the backend's workers; raise BackendUnavailable on failure.
        `front`: ahead of the queue's newer work (a job handed back after a crash)."""

    def ping(self) -> bool:
        """A bounded probe of the backend's broker (called off the request path)."""

    def live_state(self, job_id: str) -> str | None:
        """The backend's own view of the job (for the hybrid status), if it has one."""

    def queue_lengths(self) -> dict[str, int]:
        """Messages waiting per queue, for metrics and `celery_manager.py status`."""

    def held(self, job_ids: Collection[str]) -> set[str] | None:
        """Those of `job_ids` whose message the broker still holds (waiting, or delivered and
        not yet acknowledged); None if it cannot tell cheaply. The relay re-sends the others
        at once instead of waiting out the visibility timeout."""

    def consumers(self) -> dict[str, int] | None:
        """Workers consuming each queue now; None if the backend cannot tell (or is down)."""


class Breaker:
    """Cached health plus a circuit breaker: a down broker costs one request ~1 s, then none.

    `usable()` never blocks. A failed publish or probe opens the breaker for `cooldown`
    seconds; after that one request is let through to try again (half-open).
    """

    def __init__(self, cooldown: float) -> None:
        self.cooldown = cooldown
        self._open_until = 0.0
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def usable(self) -> bool:
        with self._lock:
            now = time.monotonic()
            if now < self._open_until:
                return False
            if self._open_until:
                # Half-open: let this caller try; others wait for its verdict.
                self._open_until = now + self.cooldown
            return True

    def success(self) -> None:
        with self._lock:
            self._open_until = 0.0
            self.last_error = None

    def failure(self, error: str) -> None:
        with self._lock:
            self._open_until = time.monotonic() + self.cooldown
            self.last_error = error

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self._open_until
