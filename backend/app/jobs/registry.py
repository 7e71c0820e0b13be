"""The kinds of job: which queue each uses, which Celery task runs it, which handler builds it.

Handlers are named by dotted path and imported lazily, so the API process never imports
ReportLab or Tesseract bindings just to accept a request.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from app.core import metrics
from app.core.config import Settings
from app.core.queues import (
    DOCUMENTS_QUEUE,
    NOTIFICATIONS_QUEUE,
    REPORTS_QUEUE,
)
from app.jobs.context import FollowUp, JobContext, JobOutput

Handler = Callable[[JobContext], JobOutput]
Cleanup = Callable[[Settings, str], None]

_TASKS = "app.services."
_REPORT_READY = "app.notifications.report_ready:REPORT_READY"


def _load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class JobKind:
    job_type: str
    queue: str
    task_name: str
    handler_path: str
    heavy: bool = False
    """Heavy kinds run on Celery only when a broker is configured (`app.jobs.routing`)."""
    follow_up_paths: tuple[str, ...] = ()
    """Jobs a completion may ask for (`app.jobs.context.FollowUp`, see `app.jobs.followups`)."""
    cleanup_paths: tuple[str, ...] = ()
    """What else to delete with a job of this kind, beyond its artifact and scratch files."""

    def handler(self) -> Handler:
        return cast(Handler, _load(self.handler_path))

    def follow_ups(self) -> list[FollowUp]:
        return [cast(FollowUp, _load(path)) for path in self.follow_up_paths]

    def cleanups(self) -> list[Cleanup]:
        return [cast(Cleanup, _load(path)) for path in self.cleanup_paths]


KINDS: dict[str, JobKind] = {
    kind.job_type: kind
    for kind in [
        JobKind(
            "dummy",
            REPORTS_QUEUE,
            _TASKS + "celery_report_tasks.generate_dummy_report",
            "app.reports.dummy:run",
            follow_up_paths=(_REPORT_READY,),
        ),
        # No work at all: measures the machinery itself (bench/queue_overhead.py).
        JobKind(
            "noop",
            REPORTS_QUEUE,
            _TASKS + "celery_report_tasks.generate_dummy_report",
            "app.reports.dummy:noop",
        ),
        JobKind(
            "pdf",
            REPORTS_QUEUE,
            _TASKS + "celery_report_tasks.generate_heavy_report",
            "app.reports.heavy:run",
            heavy=True,
            follow_up_paths=(_REPORT_READY,),
        ),
        JobKind(
            "excel",
            REPORTS_QUEUE,
            _TASKS + "celery_report_tasks.generate_heavy_report",
            "app.reports.heavy:run",
            heavy=True,
            follow_up_paths=(_REPORT_READY,),
        ),
        JobKind(
            "analysis",
            REPORTS_QUEUE,
            _TASKS + "celery_report_tasks.generate_heavy_report",
            "app.reports.heavy:run",
            heavy=True,
            follow_up_paths=(_REPORT_READY,),
        ),
        JobKind(
            "ocr",
            DOCUMENTS_QUEUE,
            _TASKS + "document_tasks.process_ocr",
            "app.documents.jobs:run_ocr",
        ),
        JobKind(
            "thumbnails",
            DOCUMENTS_QUEUE,
            _TASKS + "document_tasks.generate_thumbnails",
            "app.documents.jobs:run_thumbnails",
        ),
        JobKind(
            "email",
            NOTIFICATIONS_QUEUE,
            _TASKS + "notification_tasks.send_email",
            "app.notifications.jobs:run_email",
        ),
        JobKind(
            "bulk_email",
            NOTIFICATIONS_QUEUE,
            _TASKS + "notification_tasks.send_bulk_email",
            "app.notifications.jobs:run_bulk_email",
        ),
    ]
}


PERIODIC_PATHS: tuple[str, ...] = (
    "app.webhooks.sender:deliver_due",
    "app.schedules.tick:tick_due",  # the periodic duties and report schedules, once each
)
"""Domain duties every relay pass runs, each called with the settings (dotted paths, like
handlers: `jobs` imports no domain package)."""


def periodic_duties() -> list[Callable[[Settings], object]]:
    return [cast(Callable[[Settings], object], _load(path)) for path in PERIODIC_PATHS]


def kind_of(job_type: str) -> JobKind:
    try:
        return KINDS[job_type]
    except KeyError:
        raise KeyError(f"unknown job type {job_type!r}") from None


def initialise_metrics(backends: Iterable[str] = ()) -> None:
    """Every kind's metric series at zero, so a healthy service exposes them before their
    first event; `backends`: those this process submits to (the API's), none for a worker."""
    metrics.initialise([(kind.job_type, kind.queue) for kind in KINDS.values()], backends)
