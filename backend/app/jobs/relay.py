"""The outbox relay and the reaper: nothing stays `pending`, `retrying` or `started` forever.

Runs every few seconds in the API process (a thread) and as a Celery beat task; passes are
idempotent and safe to run concurrently because every move is a compare-and-set.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.core.config import Settings
from app.db.session import session_scope
from app.jobs import fairness
from app.jobs.dispatch import Dispatcher
from app.jobs.models import ReportJob
from app.jobs.registry import kind_of, periodic_duties
from app.jobs.states import JobStatus
from app.jobs.store import sweeps
from app.jobs.store.transitions import transition

log = logging.getLogger(__name__)
S = JobStatus


@dataclass
class RelayReport:
    published: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    resent: list[str] = field(default_factory=list)
    """`queued` jobs whose message was lost, sent again."""


def relay_once(
    settings: Settings, dispatcher: Dispatcher, *, stale_after: float | None = None
) -> RelayReport:
    """One pass: reap dead workers' jobs, publish the outbox (in turns over users, within
    each user's free slots: `fairness`), re-send lost retries."""
    report = RelayReport()
    stale = stale_after if stale_after is not None else settings.JOB_HEARTBEAT_TIMEOUT_SECONDS
    with session_scope() as session:
        report.requeued, report.failed = sweeps.requeue_stale(session=session, stale_after=stale)
    report.resent = _lost_publishes(settings, dispatcher)
    for job_id in [*report.requeued, *report.resent]:
        _guarded(_republish, dispatcher, job_id)

    grace = settings.OUTBOX_GRACE_SECONDS
    report.published = fairness.release(settings, dispatcher, older_than=grace)
    with session_scope() as session:
        overdue = [
            job_id
            for job_id in sweeps.overdue_retries(session=session, overdue_after=grace * 4)
            if (job := session.get(ReportJob, job_id)) is not None and job.backend != "local"
        ]
    for job_id in overdue:
        if _guarded(dispatcher.submit, job_id) == S.QUEUED:
            report.retried.append(job_id)
    for duty in periodic_duties():  # completion webhooks (app/webhooks/sender.py)
        _guarded(duty, settings)
    if report.published or report.requeued or report.failed or report.retried or report.resent:
        log.info(
            "relay: published %d, requeued %d, failed %d, retried %d, re-sent %d lost",
            len(report.published),
            len(report.requeued),
            len(report.failed),
            len(report.retried),
            len(report.resent),
        )
    return report


def _lost_publishes(settings: Settings, dispatcher: Dispatcher) -> list[str]:
    """`queued` jobs whose message is gone: never sent (a crash between commit and publish)
    or lost with a broker restarted without its data. A re-send is safe either way: the claim
    makes a duplicate a no-op; but each copy still costs a delivery, so a job is re-sent only
    when its broker says it holds no message for it, or, where the broker cannot tell, once
    it has been queued past the visibility timeout (`Dispatcher.lost`). Ages by the
    database's clock, like every time in the relay's passes.
    """
    with session_scope() as session:
        queued = sweeps.queued_on_brokers(
            session=session,
            older_than=settings.publish_grace,
            expired_after=settings.visibility_timeout,
        )
    return dispatcher.lost(queued) if queued else []


def _guarded(action: Callable[..., object], *args: object) -> str | None:
    """One job's failure must not stop the pass: the others still get published."""
    try:
        result = action(*args)
    except Exception:
        log.exception("relay: %s%r failed", getattr(action, "__name__", action), args)
        return None
    return result[0] if isinstance(result, tuple) else None


def _republish(dispatcher: Dispatcher, job_id: str) -> None:
    """A reaped job is `queued` on its old backend; send it a fresh message (or fall back)."""
    with session_scope() as session:
        job = session.get(ReportJob, job_id)
        if job is None:
            return
        backend, kind = job.backend, kind_of(job.job_type)
    if backend == "local" or backend is None:
        dispatcher.backends["local"].publish(job_id, kind)
        return
    # At the front of its queue: it was taken (or queued) before the work queued since.
    status, _ = dispatcher.submit(job_id, prefer=backend, front=True)
    if status != S.QUEUED:
        # Nobody could take it: back to the outbox, where the next pass picks a backend.
        with session_scope() as session:
            transition(session, job_id, source=[S.QUEUED], target=S.PENDING, backend=None)


class RelayThread:
    """Runs `relay_once` on a timer inside the API process."""

    def __init__(
        self,
        settings: Settings,
        dispatcher: Dispatcher,
        supervise: Callable[[], int] | None = None,
        sweeps: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.supervise = supervise
        self.sweeps = sweeps
        """Whether this process runs `relay_once` now (None: always). The probes and the
        consumer check run in every process: each API process has its own dispatcher. With
        `reportctl serve --workers N` one process sweeps (`local_executor.ExecutorSeat`)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outbox-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        stale = None
        if self.settings.embedded:
            # Every worker is ours and beats every JOB_HEARTBEAT_SECONDS: a few missed beats
            # mean it is gone (e.g. the server was killed), so take its jobs back quickly.
            stale = min(
                self.settings.JOB_HEARTBEAT_TIMEOUT_SECONDS,
                self.settings.JOB_HEARTBEAT_SECONDS * 4,
            )
        next_consumer_check = 0.0
        while not self._stop.is_set():
            try:
                if self.supervise is not None:
                    self.supervise()
                self.dispatcher.probe()
                if time.monotonic() >= next_consumer_check:
                    next_consumer_check = time.monotonic() + self.settings.CONSUMER_CHECK_SECONDS
                    self.dispatcher.refresh_consumers()
                if self.sweeps is None or self.sweeps():
                    relay_once(self.settings, self.dispatcher, stale_after=stale)
            except Exception:
                log.warning("relay pass failed", exc_info=True)
            self._stop.wait(self.settings.RELAY_INTERVAL_SECONDS)
