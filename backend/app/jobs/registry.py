"""The kinds of job: which queue each uses, which Celery task runs it, which handler builds it.

Handlers are named by dotted path and imported lazily, so the API process never imports
ReportLab or Tesseract bindings just to accept a request.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from app.jobs.context import JobContext, JobOutput

Handler = Callable[[JobContext], JobOutput]

REPORTS_QUEUE = "reports"
DOCUMENTS_QUEUE = "documents"
NOTIFICATIONS_QUEUE = "notifications"
DEFAULT_QUEUE = "celery"
QUEUES = (REPORTS_QUEUE, DOCUMENTS_QUEUE, NOTIFICATIONS_QUEUE, DEFAULT_QUEUE)

_TASKS = "app.services."


@dataclass(frozen=True)
class JobKind:
    job_type: str
    queue: str
    task_name: str
    handler_path: str
    heavy: bool = False
    """Heavy kinds run on Celery only (they wait in the outbox while it is down)."""

    def handler(self) -> Handler:
        module, _, attr = self.handler_path.partition(":")
        fn: Handler = getattr(importlib.import_module(module), attr)
        return fn


KINDS: dict[str, JobKind] = {
    kind.job_type: kind
    for kind in [
        JobKind(
            "dummy",
            REPORTS_QUEUE,
            _TASKS + "celery_report_tasks.generate_dummy_report",
            "app.reports.dummy:run",
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
        ),
        JobKind(
            "excel",
            REPORTS_QUEUE,
            _TASKS + "celery_report_tasks.generate_heavy_report",
            "app.reports.heavy:run",
            heavy=True,
        ),
        JobKind(
            "analysis",
            REPORTS_QUEUE,
            _TASKS + "celery_report_tasks.generate_heavy_report",
            "app.reports.heavy:run",
            heavy=True,
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


def kind_of(job_type: str) -> JobKind:
    try:
        return KINDS[job_type]
    except KeyError:
        raise KeyError(f"unknown job type {job_type!r}") from None
