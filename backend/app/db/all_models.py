"""Every table of the service, imported once so that `Base.metadata` holds the whole schema.

Alembic's environment and the tests import this module; application code imports the model
it needs from its own package.
"""

from __future__ import annotations

from app.db.base import Base
from app.documents.models import Document
from app.jobs.models import ReportJob
from app.monitoring.models import DailyStats
from app.notifications.models import MailDelivery
from app.reports.models import Dataset
from app.schedules.models import Schedule, ScheduleFiring
from app.users.models import ApiToken, User
from app.webhooks.models import WebhookDelivery

metadata = Base.metadata

__all__ = [
    "ApiToken",
    "DailyStats",
    "Dataset",
    "Document",
    "MailDelivery",
    "ReportJob",
    "Schedule",
    "ScheduleFiring",
    "User",
    "WebhookDelivery",
    "metadata",
]
