"""Notification tasks (queue `notifications`): one e-mail, bulk e-mail."""

from __future__ import annotations

from typing import Any

from celery import Task

from app.core.celery_app import celery_app
from app.services.task_base import execute


@celery_app.task(bind=True, name="app.services.notification_tasks.send_email")
def send_email(self: Task, job_id: str) -> dict[str, Any]:
    return execute(self, job_id)


@celery_app.task(bind=True, name="app.services.notification_tasks.send_bulk_email")
def send_bulk_email(self: Task, job_id: str) -> dict[str, Any]:
    return execute(self, job_id)
