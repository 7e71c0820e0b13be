"""Liveness of running jobs: heartbeats, throttled progress, and noticing a cancel.

One heartbeat thread per process beats for every job the process runs (a thread per job
would cost more than a short job itself). A job whose row stops moving with it, because it
was cancelled or taken over, is flagged and stops at its next progress call. A write that
meets a database outage is retried briefly, then skipped: progress is advisory, and an
attempt must not die of it (the heartbeat thread keeps trying).
"""

from __future__ import annotations

import logging
import os
import threading
import time

from app.core.config import Settings
from app.db.clock import db_now
from app.jobs.errors import JobCancelled
from app.jobs.faults import database_text, is_database_outage, retry_db
from app.jobs.states import JobStatus
from app.jobs.store.transitions import owned_transition

log = logging.getLogger(__name__)
S = JobStatus
_NOW = db_now()
PROGRESS_RETRY_SECONDS = 2.0
"""A progress write's patience with a database outage before it is skipped."""


def _touch(job_id: str, attempt: int, **values: object) -> bool:
    """Heartbeat (and optionally progress) for the attempt we own; False if we lost it.

    Stamped with the database's clock, the one the reaper and the claim compare it with."""
    return owned_transition(
        job_id,
        source=[S.STARTED],
        target=S.STARTED,
        attempt=attempt,
        heartbeat_at=_NOW,
        **values,
    )


class Liveness:
    """Heartbeat and progress for one attempt."""

    def __init__(self, job_id: str, attempt: int, settings: Settings) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.settings = settings
        self.lost = threading.Event()
        self._last_write = time.monotonic()
        self._lock = threading.Lock()

    @classmethod
    def start(cls, job_id: str, attempt: int, settings: Settings) -> Liveness:
        liveness = cls(job_id, attempt, settings)
        _Beater.for_process(settings.JOB_HEARTBEAT_SECONDS).add(liveness)
        return liveness

    def stop(self) -> None:
        _Beater.for_process(self.settings.JOB_HEARTBEAT_SECONDS).remove(self)

    def beat(self) -> None:
        with self._lock:
            if not _touch(self.job_id, self.attempt):
                self.lost.set()

    def check(self) -> None:
        if self.lost.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled or taken over")

    def progress(self, percent: float, message: str) -> None:
        self.check()
        now = time.monotonic()
        if now - self._last_write < 0.5 and percent < 100:
            return
        self._last_write = now
        values = {"progress_percent": round(percent, 2), "progress_message": message[:500]}
        try:
            with self._lock:
                moved = retry_db(
                    lambda: _touch(self.job_id, self.attempt, **values),
                    what=f"progress of job {self.job_id}",
                    budget=PROGRESS_RETRY_SECONDS,
                )
        except Exception as exc:
            if not is_database_outage(exc):
                raise
            log.warning("job %s: progress not saved (%s)", self.job_id, database_text(exc))
            return
        if not moved:
            self.lost.set()
        self.check()


class _Beater:
    """The process's heartbeat thread (re-created in a forked child, which has no threads)."""

    _instance: _Beater | None = None
    _guard = threading.Lock()

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.pid = os.getpid()
        self.jobs: set[Liveness] = set()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self.thread.start()

    @classmethod
    def for_process(cls, interval: float) -> _Beater:
        with cls._guard:
            if cls._instance is None or cls._instance.pid != os.getpid():
                cls._instance = cls(interval)
            return cls._instance

    def add(self, liveness: Liveness) -> None:
        with self.lock:
            self.jobs.add(liveness)

    def remove(self, liveness: Liveness) -> None:
        with self.lock:
            self.jobs.discard(liveness)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self.lock:
                jobs = list(self.jobs)
            for liveness in jobs:
                if time.monotonic() - liveness._last_write < self.interval / 2:
                    continue  # a progress write just refreshed the heartbeat
                try:
                    liveness.beat()
                except Exception:  # a DB blip must not kill the job; the next beat retries
                    log.warning("heartbeat failed for job %s", liveness.job_id, exc_info=True)
