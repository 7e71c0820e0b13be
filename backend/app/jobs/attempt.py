"""One claimed attempt of a job: how it ends, recorded once, and what it cleans up.

An attempt ends as its compare-and-set UPDATE says: `completed`, `failed` or `retrying`
when it wins. When it loses, the job was no longer its own, and one read of the row says why:

- `cancelled`: the job was cancelled while this attempt held it; that is the job's final
  count;
- `superseded`: another attempt took the job over (this worker stopped heart-beating, and
  came back). Not a final status: the live attempt counts the job's end. The superseded
  attempt adds its own entry to the history and removes only what it wrote (its scratch
  files, its object), never the live attempt's files or the mail ledger.

A write whose answer was lost with a dropped connection shows on that read as this
attempt's own target and number: it won after all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.db.clock import db_now
from app.jobs import artifacts
from app.jobs.states import JobStatus
from app.jobs.store import worker
from app.jobs.store.transitions import appended

S = JobStatus
SUPERSEDED = "superseded"


@dataclass(frozen=True)
class RunOutcome:
    """What happened to one delivery of a job."""

    status: str
    """`completed`, `failed`, `cancelled` (the job's final status, counted once), `retrying`,
    `superseded` (another attempt has the job), or `skipped` (not ours to run)."""
    retry_in: float | None = None
    attempt: int = 0
    job_type: str = ""
    queue: str = ""
    duration: float = 0.0


class Attempt:
    """One claimed attempt: ends it exactly once and keeps the job's attempt history."""

    def __init__(self, claim: worker.Claim, settings: Settings) -> None:
        self.claim = claim
        self.settings = settings
        self.clock = time.monotonic()
        self.stored = False
        """Set before the artifact goes to the store: from then on its object may exist."""

    def outcome(self, status: str, retry_in: float | None = None) -> RunOutcome:
        return RunOutcome(
            status=status,
            retry_in=retry_in,
            attempt=self.claim.attempts,
            job_type=self.claim.job_type,
            queue=self.claim.queue,
            duration=time.monotonic() - self.clock,
        )

    def entry(self, outcome: str, error: str | None) -> dict[str, Any]:
        """This attempt's line in the history. Times are the database's: the claim's start
        plus the attempt's monotonic duration; no host clock."""
        ended_at = self.claim.started_at + timedelta(seconds=time.monotonic() - self.clock)
        return {
            "attempt": self.claim.attempts,
            "started_at": self.claim.started_at.isoformat(),
            "ended_at": ended_at.isoformat(),
            "outcome": outcome,
            "error": error,
            "worker": self.claim.worker,
        }

    def end(self, target: JobStatus, session: Session | None = None, **values: Any) -> bool:
        """Record how the attempt ended; False if the job was cancelled or taken over.

        With `session`, the write joins the caller's transaction instead of committing alone.
        `finished_at` is the database's clock in the UPDATE; the history entry is appended
        in SQL, so a superseded attempt's entry written meanwhile is kept.
        """
        values.setdefault("finished_at", db_now())
        return worker.finish(
            job_id=self.claim.job_id,
            attempt=self.claim.attempts,
            target=target,
            session=session,
            history=appended(self.entry(str(target), values.get("error"))),
            **values,
        )

    def conclude(
        self, target: JobStatus, *, retry_in: float | None = None, **values: Any
    ) -> RunOutcome:
        """End as `target`, or as what the row says happened instead; then clean up."""
        moved = self.end(target, **values)
        return self.settle(str(target) if moved else self.why_lost(target), retry_in)

    def why_lost(self, target: JobStatus | None = None) -> str:
        """`cancelled` or `superseded` (recorded in the history), or `target` if the row
        shows that this attempt's own write won (its answer was lost)."""
        row = worker.state(self.claim.job_id)
        if row is not None and row.attempts == self.claim.attempts:
            if target is not None and row.status == target:
                return str(target)
            if row.status == S.CANCELLED:
                return str(S.CANCELLED)
        if row is None:
            return SUPERSEDED  # the job is gone (retention): nothing to record
        by = f"attempt {row.attempts}" if row.attempts > self.claim.attempts else "the reaper"
        error = f"taken over by {by} (this worker had stopped heart-beating)"
        worker.add_history(self.claim.job_id, self.entry(SUPERSEDED, error))
        return SUPERSEDED

    def settle(self, status: str, retry_in: float | None = None) -> RunOutcome:
        """Remove what this attempt owns and no longer needs; the outcome to report.

        A completion keeps its object and removes what earlier attempts left; any other end
        removes this attempt's scratch files and object only.
        """
        settings, job_id, number = self.settings, self.claim.job_id, self.claim.attempts
        if status == S.COMPLETED:
            artifacts.discard_scratch(settings, job_id, number)
            artifacts.discard_earlier(settings, job_id, number)
        else:
            artifacts.discard_attempt(settings, job_id, number, stored=self.stored)
        return self.outcome(status, retry_in if status == S.RETRYING else None)
