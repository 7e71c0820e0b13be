"""Jobs that a completion asks for, such as the report-ready e-mail of `"notify": "email"`.

A follow-up is its own job (with its queue's retries and a status of its own), so a down SMTP
server never fails the report. Its row is added in the transaction that records the
completion, so a completed job always has it: if the worker dies before publishing it, it
waits `pending` in the outbox and the relay sends it.

What a follow-up is belongs to its domain package (`app.notifications.report_ready`, which
implements `app.jobs.context.FollowUp`); the job registry names it by dotted path, like the
handlers, so the job machinery imports no domain.
"""

from __future__ import annotations

import logging

from app.jobs.dispatch import get_dispatcher

log = logging.getLogger(__name__)


def publish(job_id: str, follow_up_id: str) -> None:
    """Publish a committed follow-up. If this fails, the relay publishes it from the outbox."""
    try:
        get_dispatcher().submit(follow_up_id)
    except Exception:
        log.exception("job %s: follow-up job %s left for the relay", job_id, follow_up_id)
        return
    log.info("job %s: follow-up queued as job %s", job_id, follow_up_id)
