"""The hybrid status: the DB row plus the backend's own view of a live job.

The row is the source of truth. The backend's state is shown beside it so an operator can see
a disagreement; repairing the row is the reaper's job (`relay.relay_once`), which acts on a
dead heartbeat whatever the backend says, so no job is left `started` forever.
"""

from __future__ import annotations

from app.jobs.dispatch import Dispatcher
from app.jobs.models import ReportJob
from app.jobs.states import JobStatus

S = JobStatus


def reconcile(*, job: ReportJob, dispatcher: Dispatcher) -> str | None:
    """The backend's state for a live job on Celery or RQ, or None."""
    if job.status not in (S.QUEUED, S.STARTED, S.RETRYING) or job.backend in (None, "local"):
        return None
    return dispatcher.live_state(job.backend, job.id)


def waiting_note(*, job: ReportJob, dispatcher: Dispatcher) -> str | None:
    """Why a queued job with no message of its own does not start, if the service knows."""
    if job.status != S.QUEUED or job.progress_message:
        return None
    return dispatcher.unconsumed_note(job.backend, job.queue)
