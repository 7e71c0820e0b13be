"""Choosing a backend for a job and handing it over without ever blocking the API.

Which backends may take a kind is `app.jobs.routing`'s rule; here, trying them in order
without ever blocking. A job no backend took stays `pending`, saying why; the relay retries.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.core.queues import QUEUES
from app.db.clock import db_now
from app.db.session import session_scope
from app.jobs import routing
from app.jobs.backends.base import Backend, BackendUnavailable, Breaker
from app.jobs.backends.local import LocalBackend
from app.jobs.models import ReportJob
from app.jobs.registry import JobKind, kind_of
from app.jobs.states import JobStatus
from app.jobs.store import rows
from app.jobs.store.transitions import transition

log = logging.getLogger(__name__)
S = JobStatus


class Dispatcher:
    def __init__(self, settings: Settings, wake_local: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.backends: dict[str, Backend] = {"local": LocalBackend(wake_local)}
        self.breakers: dict[str, Breaker] = {}
        self.unconsumed: dict[str, list[str]] = {}
        """Per broker backend, the queues no worker consumed at the last look."""
        by_server: dict[str, Breaker] = {}
        if settings.CELERY_BROKER_URL and settings.JOB_BACKEND in ("auto", "celery"):
            from app.jobs.backends.celery_backend import CeleryBackend

            self._add(CeleryBackend(settings), settings.CELERY_BROKER_URL, by_server)
        if settings.RQ_REDIS_URL and settings.JOB_BACKEND in ("auto", "rq"):
            from app.jobs.backends.rq_backend import RqBackend

            self._add(RqBackend(settings), settings.RQ_REDIS_URL, by_server)

    def _add(self, backend: Backend, url: str, by_server: dict[str, Breaker]) -> None:
        """Backends on the same server share a breaker: one timeout tells about both."""
        parts = urlsplit(url)
        server = f"{parts.hostname}:{parts.port}"
        breaker = by_server.setdefault(
            server, Breaker(self.settings.CIRCUIT_BREAKER_COOLDOWN_SECONDS)
        )
        self.backends[backend.name] = backend
        self.breakers[backend.name] = breaker

    def candidates(self, kind: JobKind) -> list[str]:
        """Backends to try for `kind`, best first (the rule: `app.jobs.routing`)."""
        return routing.backends_for(kind, self.settings, self.backends)

    def waiting_reason(self, kind: JobKind) -> str:
        """Why a job of `kind` that no backend took waits: the status message it gets."""
        errors = {name: breaker.last_error for name, breaker in self.breakers.items()}
        return routing.waiting_reason(self.candidates(kind), errors)

    def first_usable(self, kind: JobKind, candidates: list[str] | None = None) -> str | None:
        """The backend a new job of `kind` should be born queued on (never blocks).
        `candidates`: `self.candidates(kind)` if the caller has it already."""
        names = self.candidates(kind) if candidates is None else candidates
        return next((name for name in names if self.usable(name)), None)

    def publish_new(self, job_id: str, kind: JobKind, name: str) -> tuple[str, str | None]:
        """Publish a job created `queued` on `name`; on failure fall back like `submit`."""
        try:
            self.backends[name].publish(job_id, kind)
        except BackendUnavailable as exc:
            log.warning("backend %s refused job %s: %s", name, job_id, exc)
            self.breakers[name].failure(str(exc))
            with session_scope(durable=False) as session:
                transition(
                    session,
                    job_id,
                    source=[S.QUEUED],
                    target=S.PENDING,
                    backend=None,
                    queued_at=None,
                    progress_message=self.waiting_reason(kind),
                )
            return self.submit(job_id)
        breaker = self.breakers.get(name)
        if breaker is not None:
            breaker.success()
        return S.QUEUED, name

    def could_take(self, kind: JobKind) -> bool:
        """Whether some backend of `kind` is worth trying now. Unlike `first_usable` it reads
        the breakers without spending a half-open breaker's one trial."""
        return any(
            name not in self.breakers or not self.breakers[name].is_open
            for name in self.candidates(kind)
        )

    def usable(self, name: str) -> bool:
        breaker = self.breakers.get(name)
        return breaker is None or breaker.usable()

    def submit(
        self, job_id: str, *, prefer: str | None = None, front: bool = False
    ) -> tuple[str, str | None]:
        """Hand a `pending` (or `retrying`) job to the first backend that takes it.

        Returns (status, backend). Never raises for an unavailable backend: the job stays
        where it is and the relay tries again later.
        """
        with session_scope() as session:
            job = session.get(ReportJob, job_id)
            if job is None or job.status not in (S.PENDING, S.RETRYING, S.QUEUED):
                return (job.status if job else "missing", job.backend if job else None)
            kind = kind_of(job.job_type)
            status, current = job.status, job.backend
        names = self.candidates(kind)
        if prefer and prefer in names:
            names = [prefer, *[n for n in names if n != prefer]]
        for name in names:
            if not self.usable(name):
                continue
            if self._hand_over(job_id, kind, name, status, current, front=front):
                return S.QUEUED, name
        return status, current

    def _hand_over(
        self,
        job_id: str,
        kind: JobKind,
        name: str,
        status: str,
        current: str | None,
        *,
        front: bool = False,
    ) -> bool:
        backend = self.backends[name]
        if name == "local":
            with session_scope() as session:
                moved = self._mark(session, job_id, name, status)
            if moved:
                backend.publish(job_id, kind)
            return moved
        try:
            backend.publish(job_id, kind, front=front)
        except BackendUnavailable as exc:
            log.warning("backend %s refused job %s: %s", name, job_id, exc)
            self.breakers[name].failure(str(exc))
            return False
        self.breakers[name].success()
        # Published first, marked second: a crash in between leaves a `pending` row whose
        # message is already out; the worker's claim accepts it, and a duplicate is a no-op.
        with session_scope(durable=False) as session:
            if not self._mark(session, job_id, name, status):
                # A worker claimed it before the mark: still record which backend has it.
                rows.record_backend(session=session, job_id=job_id, backend=name)
        return True

    @staticmethod
    def _mark(session: Session, job_id: str, name: str, status: str) -> bool:
        if status == S.QUEUED:
            # Re-publishing a queued job (reaper, lost publish): a fresh `queued_at`, so the
            # relay's lost-publish checks start over (publish grace, visibility timeout).
            return transition(
                session,
                job_id,
                source=[S.QUEUED],
                target=S.QUEUED,
                backend=name,
                queued_at=db_now(),
            )
        return rows.mark_queued(session=session, job_id=job_id, backend=name)

    def live_state(self, backend: str | None, job_id: str) -> str | None:
        impl = self.backends.get(backend or "")
        if impl is None or not self.usable(backend or ""):
            return None
        try:
            return impl.live_state(job_id)
        except Exception as exc:  # the DB row stays the source of truth
            log.debug("live state of %s from %s failed: %s", job_id, backend, exc)
            return None

    def lost(self, jobs: Iterable[tuple[str, str, bool]]) -> list[str]:
        """Of (job id, backend, past the visibility timeout) triples, the jobs to send again.

        A backend that can tell is believed, even past the timeout: in a backlog a message
        waits in its queue longer than that, and re-sending it there would only lengthen the
        backlog (every copy runs, if only to be skipped by the claim). Where the backend
        cannot tell (more messages than it reads, or it is down), a job queued past the
        visibility timeout is sent again, and a younger one waits.
        """
        by_backend: dict[str, list[tuple[str, bool]]] = {}
        for job_id, name, expired in jobs:
            by_backend.setdefault(name, []).append((job_id, expired))
        missing: list[str] = []
        for name, entries in by_backend.items():
            held = self._held(name, [job_id for job_id, _ in entries])
            if held is None:
                missing += [job_id for job_id, expired in entries if expired]
            else:
                missing += [job_id for job_id, _ in entries if job_id not in held]
        return missing

    def _held(self, name: str, job_ids: list[str]) -> set[str] | None:
        """The ids of `job_ids` that backend `name` holds a message for; None if it can't say."""
        backend = self.backends.get(name)
        if backend is None or not self.usable(name):
            return None
        try:
            return backend.held(job_ids)
        except Exception as exc:
            log.debug("could not read %s's messages: %s", name, exc)
            return None

    def refresh_consumers(self) -> dict[str, list[str]]:
        """Ask each broker backend which queues have a worker (off the request path, every
        CONSUMER_CHECK_SECONDS); remember the queues that have none, per backend."""
        unconsumed: dict[str, list[str]] = {}
        for name, backend in self.backends.items():
            if name == "local" or not self.usable(name):
                continue
            try:
                counts = backend.consumers()
            except Exception as exc:
                log.debug("could not read %s's consumers: %s", name, exc)
                counts = None
            if counts is not None:
                unconsumed[name] = [queue for queue in QUEUES if not counts.get(queue)]
        self.unconsumed = unconsumed
        return unconsumed

    def unconsumed_note(self, backend: str | None, queue: str) -> str | None:
        """Why a job queued on `backend` does not start: no worker consumes its queue."""
        if backend is None or queue not in self.unconsumed.get(backend, ()):
            return None
        return (
            f"no worker consumes queue {queue} on {backend}: start one "
            f"(celery_manager.py {'worker' if backend == 'celery' else 'rq-worker'} {queue})"
        )

    def waiting_summary(self) -> list[str]:
        """What makes jobs wait now, for `/health/ready`: brokers down, queues unconsumed."""
        notes = [
            f"{routing.NAMES.get(name, name)} unreachable ({breaker.last_error or 'no answer'}): "
            "its jobs wait in the outbox"
            for name, breaker in self.breakers.items()
            if breaker.is_open
        ]
        for backend, queues in self.unconsumed.items():
            notes += [f"no worker consumes queue {queue} on {backend}" for queue in queues]
        return notes

    def probe(self) -> dict[str, bool]:
        """Ping every backend (off the request path) and update the breakers."""
        health: dict[str, bool] = {}
        for name, backend in self.backends.items():
            try:
                ok = backend.ping()
            except Exception as exc:
                ok = False
                log.debug("probe of %s failed: %s", name, exc)
            breaker = self.breakers.get(name)
            if breaker is not None:
                breaker.success() if ok else breaker.failure("probe failed")
            health[name] = ok
        return health


_dispatcher: Dispatcher | None = None
_lock = threading.Lock()


def get_dispatcher() -> Dispatcher:
    """This process's dispatcher (the API installs one wired to its local executor)."""
    global _dispatcher
    with _lock:
        if _dispatcher is None:
            _dispatcher = Dispatcher(get_settings())
        return _dispatcher


def set_dispatcher(dispatcher: Dispatcher | None) -> None:
    global _dispatcher
    with _lock:
        _dispatcher = dispatcher
