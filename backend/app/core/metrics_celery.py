"""Celery signal hooks that make a worker's metrics right.

A prefork worker's children record the jobs; its main process must become an instance before
the pool forks (so children inherit the directory), serve the merged metrics once the pool is
up, drop an exited child's live gauges, and clean up on shutdown. The hooks are module-level
functions connected with strong references, so `install_celery_hooks` connects each once.
"""

from __future__ import annotations

import os
from typing import Any

from celery import signals

from app.core import metrics_multiprocess, metrics_server
from app.core.config import get_settings


def _on_worker_init(**_: Any) -> None:
    metrics_multiprocess.setup_multiprocess(get_settings())


def _on_worker_ready(**_: Any) -> None:
    settings = get_settings()
    metrics_server.start_worker_metrics_server(
        settings.WORKER_METRICS_PORT,
        settings.WORKER_METRICS_HOST,
        span=settings.WORKER_METRICS_PORT_SPAN,
    )


def _on_child_exit(pid: int | None = None, **_: Any) -> None:
    metrics_multiprocess.mark_process_dead(pid or os.getpid())


def _on_worker_shutdown(**_: Any) -> None:
    metrics_server.stop_worker_metrics_server()
    metrics_multiprocess.teardown_multiprocess()


def install_celery_hooks() -> None:
    """Wire a Celery worker: instance dir before the pool forks, endpoint once ready,
    live gauges dropped when a pool child exits. Call it from the Celery app module."""
    signals.worker_init.connect(_on_worker_init, weak=False)
    signals.worker_ready.connect(_on_worker_ready, weak=False)
    signals.worker_process_shutdown.connect(_on_child_exit, weak=False)
    signals.worker_shutdown.connect(_on_worker_shutdown, weak=False)
