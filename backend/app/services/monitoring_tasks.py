"""Monitoring and housekeeping tasks (queue `celery`), run by Celery beat."""

from __future__ import annotations

from typing import Any

from app.core.celery_app import celery_app
from app.core.config import get_settings
from app.jobs.dispatch import get_dispatcher
from app.jobs.relay import relay_once
from app.monitoring import daily_stats, health, system
from app.storage import get_store


@celery_app.task(name="app.services.monitoring_tasks.health_check")
def health_check() -> dict[str, Any]:
    """Database, broker, result backend, workers per queue, disk space (every 5 min)."""
    return health.run_health_checks(settings=get_settings(), celery_app=celery_app).as_dict()


@celery_app.task(name="app.services.monitoring_tasks.collect_system_metrics")
def collect_system_metrics() -> dict[str, Any]:
    """CPU, memory and disk of the local storage root (or, with S3, the scratch disk)."""
    settings = get_settings()
    local_root = get_store(settings).local_root
    return system.collect_system_metrics(paths=[local_root or settings.scratch_dir])


@celery_app.task(name="app.services.monitoring_tasks.daily_metrics_report")
def daily_metrics_report() -> dict[str, Any]:
    """Yesterday's jobs by type and status, durations, failures; stored and mailed to admins."""
    return daily_stats.run_daily_report(settings=get_settings())


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
