"""Monitoring and housekeeping tasks (queue `celery`), run by Celery beat."""

from __future__ import annotations

from typing import Any

from app.core.celery_app import celery_app
from app.core.config import get_settings
from app.jobs.dispatch import get_dispatcher
from app.jobs.relay import relay_once


@celery_app.task(name="app.services.monitoring_tasks.relay_outbox")
def relay_outbox() -> dict[str, Any]:
    """Publish the outbox, re-send overdue retries, and reap jobs whose worker died."""
    report = relay_once(get_settings(), get_dispatcher())
    return {
        "published": len(report.published),
        "requeued": len(report.requeued),
        "failed": len(report.failed),
        "retried": len(report.retried),
    }
