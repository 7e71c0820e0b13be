"""Document tasks (queue `documents`): OCR and thumbnails."""

from __future__ import annotations

from typing import Any

from celery import Task

from app.core.celery_app import celery_app
from app.services.task_base import execute


@celery_app.task(bind=True, name="app.services.document_tasks.process_ocr")
def process_ocr(self: Task, job_id: str) -> dict[str, Any]:
    return execute(self, job_id)


@celery_app.task(bind=True, name="app.services.document_tasks.generate_thumbnails")
def generate_thumbnails(self: Task, job_id: str) -> dict[str, Any]:
    return execute(self, job_id)
