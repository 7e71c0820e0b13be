"""The Celery queues, one per kind of load: part of the deployment (workers are started per
queue), so they are named here, below every package that routes work to them."""

from __future__ import annotations

REPORTS_QUEUE = "reports"
DOCUMENTS_QUEUE = "documents"
NOTIFICATIONS_QUEUE = "notifications"
DEFAULT_QUEUE = "celery"
QUEUES = (REPORTS_QUEUE, DOCUMENTS_QUEUE, NOTIFICATIONS_QUEUE, DEFAULT_QUEUE)
