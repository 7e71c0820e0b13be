"""The embedded backend: the database is the queue, local worker processes are the workers."""

from __future__ import annotations

from collections.abc import Callable, Collection

from app.jobs.registry import JobKind


class LocalBackend:
    """Publishing is the `queued` mark itself; we only wake the executor up."""

    name = "local"

    def __init__(self, wake: Callable[[], None] | None = None) -> None:
        self.wake = wake

    def publish(
        self, job_id: str, kind: JobKind, *, countdown: float = 0.0, front: bool = False
    ) -> None:
        # `front`: the poll takes jobs by `queued_at`, which a hand-back keeps.
        if self.wake is not None:
            self.wake()

    def ping(self) -> bool:
        return True

    def live_state(self, job_id: str) -> str | None:
        return None

    def queue_lengths(self) -> dict[str, int]:
        return {}

    def held(self, job_ids: Collection[str]) -> set[str] | None:
        return None  # the row is the message: nothing can be lost in between

    def consumers(self) -> dict[str, int] | None:
        return None  # the API's own executor: `/health/ready` counts its processes
