"""`run_job`: the one place a job executes, whichever backend delivered it.

Claim the row (compare-and-set, so duplicates and redeliveries are harmless), run the handler
with progress and a heartbeat, store the artifact atomically (part of the attempt: a storage
outage retries like any transient error), and record the outcome. What is transient and what
is permanent is `faults.classify`'s to say, for every backend. The caller (a Celery task, an
RQ job, a local worker) only schedules what the outcome asks for.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from app.core import metrics
from app.core.config import Settings, get_settings
from app.core.logging import job_log_context
from app.db.clock import db_now
from app.db.session import session_scope
from app.jobs import artifacts, fairness, faults, followups
from app.jobs.attempt import SUPERSEDED, Attempt
from app.jobs.attempt import RunOutcome as RunOutcome
from app.jobs.context import JobContext, JobOutput
from app.jobs.errors import JobCancelled, JobTimedOut
from app.jobs.heartbeat import Liveness
from app.jobs.registry import kind_of
from app.jobs.states import FINAL_STATUSES, JobStatus
from app.jobs.store import worker

log = logging.getLogger(__name__)
S = JobStatus


def _timeout_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [JobTimedOut]
    try:
        from billiard.exceptions import SoftTimeLimitExceeded

        errors.append(SoftTimeLimitExceeded)
    except ImportError:  # pragma: no cover - celery is a hard dependency
        pass
    return tuple(errors)


TIMEOUT_ERRORS = _timeout_errors()


_WORKER: dict[int, str] = {}


def worker_name() -> str:
    pid = os.getpid()
    name = _WORKER.get(pid)
    if name is None:
        name = _WORKER[pid] = f"{socket.gethostname()}:{pid}"
    return name


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
            outcome = _observed(_run_claimed(Attempt(claim, settings)))
        except BaseException:
            # E.g. the database stayed down past the retries of the final write: the reaper
            # re-runs the job; the gauge must not count it as running forever.
            metrics.job_abandoned(claim.job_type, claim.queue)
            raise
    if outcome.status in FINAL_STATUSES:
        fairness.release_for_owner(claim.owner_id, settings)  # a slot of the owner's is free
    return outcome


def _run_claimed(attempt: Attempt) -> RunOutcome:
    claim, settings = attempt.claim, attempt.settings
    job_id = claim.job_id
    if claim.attempts > claim.max_attempts:
        return attempt.conclude(S.FAILED, error=f"gave up after {claim.max_attempts} attempts")

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
        stored = _store(attempt, liveness, output)
    except JobCancelled:
        outcome = attempt.settle(attempt.why_lost())
        log.info("job %s attempt %d %s", job_id, claim.attempts, outcome.status)
        return outcome
    except TIMEOUT_ERRORS:
        limit = settings.JOB_SOFT_TIME_LIMIT_SECONDS
        return attempt.conclude(S.FAILED, error=f"timed out after {limit} s (soft time limit)")
    except Exception as exc:
        fault = faults.classify(exc)
        if isinstance(fault, faults.Transient):
            return _retry_or_fail(attempt, fault.reason)
        if fault.bug:
            log.exception("job %s crashed", job_id)
        return attempt.conclude(S.FAILED, error=fault.reason)
    finally:
        liveness.stop()

    outcome = _complete(attempt, output, stored)
    log.info("job %s attempt %d %s", job_id, claim.attempts, outcome.status)
    return outcome


def _store(
    attempt: Attempt, liveness: Liveness, output: JobOutput
) -> artifacts.StoredArtifact | None:
    """Put the built file in the store: part of the attempt, so an outage retries it."""
    if output.artifact is None:
        return None
    try:
        liveness.check()  # cancelled or taken over meanwhile: no upload in vain
    except JobCancelled:
        output.artifact.path.unlink(missing_ok=True)
        raise
    attempt.stored = True  # from here on the object may exist, even if the call fails
    return artifacts.store(
        attempt.settings, attempt.claim.job_id, output.artifact, attempt=attempt.claim.attempts
    )


def _observed(outcome: RunOutcome) -> RunOutcome:
    """Count the end of a claimed attempt once: a retry, a takeover, or the job's final
    status (one per job: a superseded attempt never counts as one)."""
    if outcome.status == "retrying":
        metrics.job_retried(outcome.job_type, outcome.queue)
    elif outcome.status == SUPERSEDED:
        metrics.job_superseded(outcome.job_type, outcome.queue)
    else:
        metrics.job_finished(outcome.job_type, outcome.queue, outcome.status, outcome.duration)
    return outcome


def _queue_wait(claim: worker.Claim) -> float | None:
    """Queued -> started of a first attempt (later ones waited out a backoff, not a queue)."""
    if claim.attempts != 1 or claim.queued_at is None:
        return None
    return (claim.started_at - claim.queued_at).total_seconds()


def _retry_or_fail(attempt: Attempt, reason: str) -> RunOutcome:
    claim, settings = attempt.claim, attempt.settings
    if claim.attempts >= claim.max_attempts:
        error = f"gave up after {claim.attempts} attempts: {reason}"
        return attempt.conclude(S.FAILED, error=error)
    delay = settings.retry_delay(claim.attempts)
    outcome = attempt.conclude(
        S.RETRYING,
        retry_in=delay,
        finished_at=None,
        next_attempt_at=db_now(delay),  # due by the clock the claim compares it with
        error=f"attempt {claim.attempts} failed: {reason}; retrying in {delay:g} s",
        progress_message=f"retrying in {delay:g} s",
    )
    if outcome.status == S.RETRYING:
        log.info(
            "job %s attempt %d failed transiently (%s), retry in %.1fs",
            claim.job_id,
            claim.attempts,
            reason,
            delay,
        )
    return outcome


def _complete(
    attempt: Attempt, output: JobOutput, stored: artifacts.StoredArtifact | None
) -> RunOutcome:
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
        return attempt.settle(S.COMPLETED)
    # Cancelled or taken over while we finished: only our own file goes, never the winner's.
    return attempt.settle(attempt.why_lost(S.COMPLETED))


def _record_completion(attempt: Attempt, values: dict[str, Any]) -> bool:
    """The completion, and with it (one transaction, retried whole after a dropped
    connection) the follow-up jobs it asks for."""
    claim = attempt.claim
    wanted = [f for f in kind_of(claim.job_type).follow_ups() if f.wanted(claim.params)]
    if not wanted:
        return attempt.end(S.COMPLETED, **values)

    def transaction() -> list[str | None] | None:
        with session_scope() as session:
            if not attempt.end(S.COMPLETED, session=session, **values):
                return None
            return [
                follow_up.add(
                    session=session,
                    settings=attempt.settings,
                    job_id=claim.job_id,
                    owner_id=claim.owner_id,
                    params=claim.params,
                )
                for follow_up in wanted
            ]

    added = faults.retry_db(transaction, what=f"completion of job {claim.job_id}")
    if added is None:
        return False
    for follow_up_id in added:
        if follow_up_id is not None:
            followups.publish(claim.job_id, follow_up_id)
    return True
