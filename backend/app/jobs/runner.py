"""`run_job`: the one place a job executes, whichever backend delivered it.

Claim the row (compare-and-set, so duplicates and redeliveries are harmless), run the handler
with progress and a heartbeat, store the artifact atomically, and record the outcome. The
caller (a Celery task, an RQ job, a local worker) only schedules what the outcome asks for.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.jobs import artifacts, service
from app.jobs.context import JobContext, JobOutput
from app.jobs.errors import JobCancelled, JobTimedOut, PermanentJobError, TransientJobError
from app.jobs.registry import kind_of
from app.jobs.states import transition
from app.models import JobStatus, ReportJob, utcnow

log = logging.getLogger(__name__)
S = JobStatus

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientJobError,
    ConnectionError,
    TimeoutError,
)


def _timeout_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [JobTimedOut]
    try:
        from billiard.exceptions import SoftTimeLimitExceeded

        errors.append(SoftTimeLimitExceeded)
    except ImportError:  # pragma: no cover - celery is a hard dependency
        pass
    return tuple(errors)


TIMEOUT_ERRORS = _timeout_errors()


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one delivery of a job."""

    status: str
    """`completed`, `failed`, `retrying`, `cancelled`, or `skipped` (not ours to run)."""
    retry_in: float | None = None
    attempt: int = 0
    job_type: str = ""
    queue: str = ""
    duration: float = 0.0


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class _Liveness:
    """Heartbeat and progress for one attempt; notices a cancel or a takeover."""

    def __init__(self, job_id: str, attempt: int, settings: Settings) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.settings = settings
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._last_write = 0.0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _touch(self, **values: object) -> bool:
        with session_scope() as session:
            return transition(
                session,
                self.job_id,
                source=[S.STARTED],
                target=S.STARTED,
                where=[ReportJob.attempts == self.attempt],
                heartbeat_at=utcnow(),
                **values,
            )

    def _beat(self) -> None:
        while not self._stop.wait(self.settings.JOB_HEARTBEAT_SECONDS):
            try:
                with self._lock:
                    if not self._touch():
                        self.lost.set()
                        return
            except Exception:  # a DB blip must not kill the job; the next beat retries
                log.warning("heartbeat failed for job %s", self.job_id, exc_info=True)

    def check(self) -> None:
        if self.lost.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled or taken over")

    def progress(self, percent: float, message: str) -> None:
        self.check()
        now = time.monotonic()
        if now - self._last_write < 0.5 and percent < 100:
            return
        self._last_write = now
        with self._lock:
            if not self._touch(progress_percent=round(percent, 2), progress_message=message[:500]):
                self.lost.set()
        self.check()


def run_job(job_id: str, *, settings: Settings | None = None) -> RunOutcome:
    """Run one delivery of `job_id`. Safe to call twice: the second call is a no-op."""
    settings = settings or get_settings()
    stale_before = utcnow() - timedelta(seconds=settings.JOB_HEARTBEAT_TIMEOUT_SECONDS)
    with session_scope() as session:
        job = service.claim(
            session=session, job_id=job_id, worker=worker_name(), stale_before=stale_before
        )
        if job is None:
            return RunOutcome(status="skipped")
        attempt, job_type, params, owner_id = job.attempts, job.job_type, job.params, job.owner_id
        max_attempts, queue = job.max_attempts, job.queue

    base = RunOutcome(status="", attempt=attempt, job_type=job_type, queue=queue)
    if attempt > max_attempts:
        _end(job_id, attempt, S.FAILED, error=f"gave up after {max_attempts} attempts")
        return _with(base, status="failed")

    liveness = _Liveness(job_id, attempt, settings)
    ctx = JobContext(
        job_id=job_id,
        job_type=job_type,
        params=dict(params or {}),
        owner_id=owner_id,
        attempt=attempt,
        settings=settings,
        report_progress=liveness.progress,
        check_cancelled=liveness.check,
        scratch_dir=artifacts.scratch_dir(settings),
    )
    started = time.monotonic()
    liveness.start()
    log.info("job %s (%s) attempt %d started", job_id, job_type, attempt)
    try:
        output = kind_of(job_type).handler()(ctx)
    except JobCancelled:
        _discard(settings, job_id)
        return _with(base, status="cancelled", duration=time.monotonic() - started)
    except TIMEOUT_ERRORS:
        _discard(settings, job_id)
        limit = settings.JOB_SOFT_TIME_LIMIT_SECONDS
        _end(job_id, attempt, S.FAILED, error=f"timed out after {limit} s (soft time limit)")
        return _with(base, status="failed", duration=time.monotonic() - started)
    except TRANSIENT_ERRORS as exc:
        _discard(settings, job_id)
        return _retry_or_fail(base, job_id, attempt, max_attempts, exc, settings, started)
    except PermanentJobError as exc:
        _discard(settings, job_id)
        _end(job_id, attempt, S.FAILED, error=str(exc) or type(exc).__name__)
        return _with(base, status="failed", duration=time.monotonic() - started)
    except Exception as exc:
        log.exception("job %s crashed", job_id)
        _discard(settings, job_id)
        _end(job_id, attempt, S.FAILED, error=f"internal error: {type(exc).__name__}: {exc}")
        return _with(base, status="failed", duration=time.monotonic() - started)
    finally:
        liveness.stop()

    status = _complete(settings, job_id, attempt, output)
    log.info("job %s attempt %d %s", job_id, attempt, status)
    return _with(base, status=status, duration=time.monotonic() - started)


def _with(base: RunOutcome, **changes: Any) -> RunOutcome:
    return replace(base, **changes)


def _end(job_id: str, attempt: int, target: JobStatus, **values: object) -> bool:
    values.setdefault("finished_at", utcnow())
    with session_scope() as session:
        values["history"] = _history_with(session, job_id, attempt, str(target), values)
        return service.finish(
            session=session, job_id=job_id, attempt=attempt, target=target, **values
        )


def _history_with(
    session: Session, job_id: str, attempt: int, outcome: str, values: dict[str, object]
) -> list[dict[str, Any]]:
    """The job's attempt log plus this attempt (the caller owns the attempt, so no race)."""
    job = session.get(ReportJob, job_id)
    history = list(job.history or []) if job else []
    started = job.started_at if job else None
    history.append(
        {
            "attempt": attempt,
            "started_at": started.isoformat() if started else None,
            "ended_at": utcnow().isoformat(),
            "outcome": outcome,
            "error": values.get("error"),
            "worker": job.worker if job else None,
        }
    )
    return history


def _retry_or_fail(
    base: RunOutcome,
    job_id: str,
    attempt: int,
    max_attempts: int,
    exc: BaseException,
    settings: Settings,
    started: float,
) -> RunOutcome:
    duration = time.monotonic() - started
    message = str(exc) or type(exc).__name__
    if attempt >= max_attempts:
        _end(job_id, attempt, S.FAILED, error=f"gave up after {attempt} attempts: {message}")
        return _with(base, status="failed", duration=duration)
    delay = settings.retry_delay(attempt)
    moved = _end(
        job_id,
        attempt,
        S.RETRYING,
        finished_at=None,
        next_attempt_at=utcnow() + timedelta(seconds=delay),
        error=f"attempt {attempt} failed: {message}; retrying in {delay:g} s",
        progress_message=f"retrying in {delay:g} s",
    )
    if not moved:
        return _with(base, status="cancelled", duration=duration)
    log.info("job %s attempt %d failed transiently, retry in %.1fs", job_id, attempt, delay)
    return _with(base, status="retrying", retry_in=delay, duration=duration)


def _complete(settings: Settings, job_id: str, attempt: int, output: JobOutput) -> str:
    stored = artifacts.store(settings, job_id, output.artifact) if output.artifact else None
    values: dict[str, object] = {
        "result": output.result,
        "progress_percent": 100.0,
        "progress_message": "done",
        "error": None,
    }
    if stored:
        values.update(
            artifact_path=stored.relative_path,
            artifact_name=stored.filename,
            artifact_mime=stored.mime_type,
            artifact_size=stored.size,
            artifact_sha256=stored.sha256,
        )
    if _end(job_id, attempt, S.COMPLETED, **values):
        return "completed"
    # Cancelled (or taken over) while we finished: our file must not outlive the decision.
    with session_scope() as session:
        job = session.get(ReportJob, job_id)
        keep = job is not None and job.status == S.COMPLETED
    if not keep:
        artifacts.remove_job_files(settings, job_id)
    return "cancelled"


def _discard(settings: Settings, job_id: str) -> None:
    for leftover in artifacts.scratch_dir(settings).glob(f"{job_id}-*"):
        leftover.unlink(missing_ok=True)
