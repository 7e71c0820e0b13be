"""`run_job`: the one place a job executes, whichever backend delivered it.

Claim the row (compare-and-set, so duplicates and redeliveries are harmless), run the handler
with progress and a heartbeat, store the artifact atomically, and record the outcome. The
caller (a Celery task, an RQ job, a local worker) only schedules what the outcome asks for.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.core import metrics
from app.core.config import Settings, get_settings
from app.core.logging import job_log_context
from app.db.clock import db_now
from app.db.session import session_scope
from app.jobs import artifacts, followups
from app.jobs.context import JobContext, JobOutput
from app.jobs.errors import JobCancelled, JobTimedOut, PermanentJobError, TransientJobError
from app.jobs.heartbeat import Liveness
from app.jobs.models import ReportJob
from app.jobs.registry import kind_of
from app.jobs.states import JobStatus
from app.jobs.store import worker

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


_WORKER: dict[int, str] = {}


def worker_name() -> str:
    pid = os.getpid()
    name = _WORKER.get(pid)
    if name is None:
        name = _WORKER[pid] = f"{socket.gethostname()}:{pid}"
    return name


class _Attempt:
    """One claimed attempt: ends it exactly once and keeps the job's attempt history."""

    def __init__(self, claim: worker.Claim, settings: Settings) -> None:
        self.claim = claim
        self.settings = settings
        self.clock = time.monotonic()

    def outcome(self, status: str, retry_in: float | None = None) -> RunOutcome:
        return RunOutcome(
            status=status,
            retry_in=retry_in,
            attempt=self.claim.attempts,
            job_type=self.claim.job_type,
            queue=self.claim.queue,
            duration=time.monotonic() - self.clock,
        )

    def end(self, target: JobStatus, session: Session | None = None, **values: Any) -> bool:
        """Record how the attempt ended; False if the job was cancelled or taken over.

        With `session`, the write joins the caller's transaction instead of committing alone.
        Times are the database's: `finished_at` its clock in the UPDATE, the history's end the
        claim's (database) start plus the attempt's monotonic duration; no host clock.
        """
        values.setdefault("finished_at", db_now())
        ended_at = self.claim.started_at + timedelta(seconds=time.monotonic() - self.clock)
        entry = {
            "attempt": self.claim.attempts,
            "started_at": self.claim.started_at.isoformat(),
            "ended_at": ended_at.isoformat(),
            "outcome": str(target),
            "error": values.get("error"),
            "worker": self.claim.worker,
        }
        return worker.finish(
            job_id=self.claim.job_id,
            attempt=self.claim.attempts,
            target=target,
            session=session,
            history=[*self.claim.history, entry],
            **values,
        )


def run_job(job_id: str, *, settings: Settings | None = None) -> RunOutcome:
    """Run one delivery of `job_id`. Safe to call twice: the second call is a no-op."""
    settings = settings or get_settings()
    claim = worker.claim(
        job_id=job_id, worker=worker_name(), stale_after=settings.JOB_HEARTBEAT_TIMEOUT_SECONDS
    )
    if claim is None:
        return RunOutcome(status="skipped")
    metrics.job_started(claim.job_type, claim.queue, _queue_wait(claim))
    with job_log_context(claim.job_id, claim.job_type, claim.attempts):
        try:
            return _observed(_run_claimed(_Attempt(claim, settings)))
        except BaseException:
            # E.g. the artifact store failed: the reaper re-runs the job; the gauge must not
            # count it as running forever.
            metrics.job_abandoned(claim.job_type, claim.queue)
            raise


def _run_claimed(attempt: _Attempt) -> RunOutcome:
    claim, settings = attempt.claim, attempt.settings
    job_id = claim.job_id
    if claim.attempts > claim.max_attempts:
        attempt.end(S.FAILED, error=f"gave up after {claim.max_attempts} attempts")
        return attempt.outcome("failed")

    liveness = Liveness.start(job_id, claim.attempts, settings)
    ctx = JobContext(
        job_id=job_id,
        job_type=claim.job_type,
        params=claim.params,
        owner_id=claim.owner_id,
        attempt=claim.attempts,
        settings=settings,
        report_progress=liveness.progress,
        check_cancelled=liveness.check,
        scratch_dir=artifacts.scratch_dir(settings),
    )
    log.debug("job %s (%s) attempt %d started", job_id, claim.job_type, claim.attempts)
    try:
        output = kind_of(claim.job_type).handler()(ctx)
    except JobCancelled:
        _discard(settings, job_id)
        return attempt.outcome("cancelled")
    except TIMEOUT_ERRORS:
        _discard(settings, job_id)
        limit = settings.JOB_SOFT_TIME_LIMIT_SECONDS
        attempt.end(S.FAILED, error=f"timed out after {limit} s (soft time limit)")
        return attempt.outcome("failed")
    except TRANSIENT_ERRORS as exc:
        _discard(settings, job_id)
        return _retry_or_fail(attempt, exc)
    except PermanentJobError as exc:
        _discard(settings, job_id)
        attempt.end(S.FAILED, error=str(exc) or type(exc).__name__)
        return attempt.outcome("failed")
    except Exception as exc:
        log.exception("job %s crashed", job_id)
        _discard(settings, job_id)
        attempt.end(S.FAILED, error=f"internal error: {type(exc).__name__}: {exc}")
        return attempt.outcome("failed")
    finally:
        liveness.stop()

    status = _complete(attempt, output)
    log.info("job %s attempt %d %s", job_id, claim.attempts, status)
    return attempt.outcome(status)


def _observed(outcome: RunOutcome) -> RunOutcome:
    """Count the end of a claimed attempt once: a retry, or the job's final status."""
    if outcome.status == "retrying":
        metrics.job_retried(outcome.job_type, outcome.queue)
    else:
        metrics.job_finished(outcome.job_type, outcome.queue, outcome.status, outcome.duration)
    return outcome


def _queue_wait(claim: worker.Claim) -> float | None:
    """Queued -> started of a first attempt (later ones waited out a backoff, not a queue)."""
    if claim.attempts != 1 or claim.queued_at is None:
        return None
    return (claim.started_at - claim.queued_at).total_seconds()


def _retry_or_fail(attempt: _Attempt, exc: BaseException) -> RunOutcome:
    claim, settings = attempt.claim, attempt.settings
    message = str(exc) or type(exc).__name__
    if claim.attempts >= claim.max_attempts:
        attempt.end(S.FAILED, error=f"gave up after {claim.attempts} attempts: {message}")
        return attempt.outcome("failed")
    delay = settings.retry_delay(claim.attempts)
    moved = attempt.end(
        S.RETRYING,
        finished_at=None,
        next_attempt_at=db_now(delay),  # due by the clock the claim compares it with
        error=f"attempt {claim.attempts} failed: {message}; retrying in {delay:g} s",
        progress_message=f"retrying in {delay:g} s",
    )
    if not moved:
        return attempt.outcome("cancelled")
    log.info(
        "job %s attempt %d failed transiently, retry in %.1fs", claim.job_id, claim.attempts, delay
    )
    return attempt.outcome("retrying", retry_in=delay)


def _complete(attempt: _Attempt, output: JobOutput) -> str:
    settings, job_id = attempt.settings, attempt.claim.job_id
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
    if _record_completion(attempt, values):
        return "completed"
    # Cancelled (or taken over) while we finished: our file must not outlive the decision.
    with session_scope() as session:
        job = session.get(ReportJob, job_id)
        keep = job is not None and job.status == S.COMPLETED
    if not keep:
        artifacts.remove_job_files(settings, job_id, attempt.claim.job_type)
    return "cancelled"


def _record_completion(attempt: _Attempt, values: dict[str, Any]) -> bool:
    """The completion, and with it (one transaction) the follow-up jobs it asks for."""
    claim = attempt.claim
    wanted = [f for f in kind_of(claim.job_type).follow_ups() if f.wanted(claim.params)]
    if not wanted:
        return attempt.end(S.COMPLETED, **values)
    with session_scope() as session:
        if not attempt.end(S.COMPLETED, session=session, **values):
            return False
        added = [
            follow_up.add(
                session=session,
                settings=attempt.settings,
                job_id=claim.job_id,
                owner_id=claim.owner_id,
                params=claim.params,
            )
            for follow_up in wanted
        ]
    for follow_up_id in added:
        if follow_up_id is not None:
            followups.publish(claim.job_id, follow_up_id)
    return True


def _discard(settings: Settings, job_id: str) -> None:
    artifacts.discard_scratch(settings, job_id)
