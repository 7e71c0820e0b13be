"""The Celery application, configured from Settings.

Reliability comes from the settings here plus the job row: JSON only (a pickle on the queue is
refused), late acks and reject-on-worker-lost (a killed worker's job is redelivered), prefetch
1 (a long report does not hold others hostage), a visibility timeout above the hard time limit
plus the longest backoff (no double delivery of a running job), and `run_job`'s claim, which
makes any redelivery that still slips through a no-op.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Celery, signals
from kombu.entity import Queue

from app.core import metrics_celery, redis_transport, startup
from app.core.config import Settings, get_settings
from app.core.queues import (
    DEFAULT_QUEUE,
    DOCUMENTS_QUEUE,
    NOTIFICATIONS_QUEUE,
    QUEUES,
    REPORTS_QUEUE,
)

TASK_MODULES = [
    "app.services.celery_report_tasks",
    "app.services.document_tasks",
    "app.services.notification_tasks",
    "app.services.monitoring_tasks",
]

_REPORT_TASKS = "app.services.celery_report_tasks."
_MONITORING_TASKS = "app.services.monitoring_tasks."

TASK_ROUTES: dict[str, dict[str, str]] = {
    _REPORT_TASKS + "*": {"queue": REPORTS_QUEUE},
    "app.services.document_tasks.*": {"queue": DOCUMENTS_QUEUE},
    "app.services.notification_tasks.*": {"queue": NOTIFICATIONS_QUEUE},
    _MONITORING_TASKS + "*": {"queue": DEFAULT_QUEUE},
}
"""A task's queue is its module's, as the specification lays them out: a job kind's task is
defined in the module of its queue (`app.services.task_base` checks this at import)."""


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """The cleanup, health check and daily report are schedule rows (`app.schedules`), fired
    once per due time by whichever relay pass ticks first; beat drives the relay. What stays
    here is safe to run from several beats: the relay (compare-and-set) and host gauges."""
    return {
        "system-metrics": {
            "task": _MONITORING_TASKS + "collect_system_metrics",
            "schedule": timedelta(seconds=60),
        },
        "relay-outbox": {
            "task": _MONITORING_TASKS + "relay_outbox",
            "schedule": timedelta(seconds=settings.BEAT_RELAY_SECONDS),
            "options": {"expires": settings.BEAT_RELAY_SECONDS * 4},
        },
    }


def create_celery(settings: Settings, *, publisher: bool = False) -> Celery:
    """The app for workers and beat, or (`publisher=True`) the API's bounded publisher.

    The publisher never touches the result store (Celery would otherwise subscribe to each
    task's result as it sends it, and with Redis down that retries for 20 s) and makes one
    connection attempt per publish (kombu would otherwise retry for seconds)."""
    redis_transport.install()  # redis:// without a client object built per command
    timeout = settings.BROKER_PUBLISH_TIMEOUT_SECONDS
    transport_options: dict[str, Any] = {
        "visibility_timeout": settings.visibility_timeout,
        "socket_connect_timeout": timeout,
        "socket_timeout": max(timeout, 5.0),
    }
    if publisher:
        transport_options.update(max_retries=0, connect_retries_timeout=timeout)
    # Workers send task events for Flower; the API does not announce each send (one Redis
    # round trip less per job: Flower still sees every task as soon as a worker takes it).
    app = Celery(
        "report_jobs",
        broker=settings.CELERY_BROKER_URL or "memory://",
        backend=None if publisher else (settings.CELERY_RESULT_BACKEND or None),
        include=TASK_MODULES,
    )
    app.conf.update(
        # Security: messages are JSON; anything else is refused before it is decoded.
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        # Reliability.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_soft_time_limit=settings.JOB_SOFT_TIME_LIMIT_SECONDS,
        task_time_limit=settings.JOB_HARD_TIME_LIMIT_SECONDS,
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=timeout,
        redis_socket_connect_timeout=timeout,
        redis_socket_timeout=max(timeout, 5.0),
        redis_retry_on_timeout=False,
        result_expires=timedelta(days=settings.JOB_RETENTION_DAYS),
        result_extended=True,
        # Queues and routing.
        task_default_queue=DEFAULT_QUEUE,
        task_queues=[Queue(name) for name in QUEUES],
        task_routes=TASK_ROUTES,
        task_create_missing_queues=False,
        # Observability (Flower needs events).
        task_track_started=True,
        worker_send_task_events=True,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
        # Profiles: prod is strict; nothing ever runs eagerly outside unit tests.
        task_always_eager=False,
        task_eager_propagates=True,
        worker_cancel_long_running_tasks_on_connection_loss=False,
        timezone="UTC",
        enable_utc=True,
        beat_schedule=beat_schedule(settings),
    )
    return app


celery_app = create_celery(get_settings())
# Worker metrics: multiprocess directory before the pool forks, an HTTP endpoint per worker.
metrics_celery.install_celery_hooks()


@signals.worker_init.connect
def _worker_init(**_: Any) -> None:
    """Refuse a broker no API publishes to (also for `celery -A app.core.celery_app worker`
    started by hand), then import the database driver once, before the pool forks: children
    inherit it."""
    from app.db.session import warm_up

    startup.require_broker(get_settings())
    warm_up(connect=False)


@signals.celeryd_after_setup.connect
def _worker_describe(**_: Any) -> None:
    """After logging is configured (worker_init runs before it): what this worker uses."""
    startup.log_deployment(get_settings(), "celery worker")


@signals.beat_init.connect
def _beat_init(**_: Any) -> None:
    startup.require_broker(get_settings())
    startup.log_deployment(get_settings(), "celery beat")


@signals.worker_process_init.connect
def _child_init(**_: Any) -> None:
    """A forked pool child must not reuse its parent's database connections; it opens its
    own before its first job (which would otherwise pay the connection set-up)."""
    from app.db.session import dispose_engines, warm_up

    dispose_engines()
    warm_up(connect=True)


@signals.setup_logging.connect
def _setup_logging(**_: Any) -> None:
    from app.core.logging import configure_logging

    configure_logging(get_settings())
