"""Task names are a contract with what is already queued, with beat and with Flower.

Messages are sent by name from a stock Celery app (not ours), as a producer of the previous
release would have sent them, and a real worker must run each one.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest
from celery import Celery

from app.core.celery_app import TASK_ROUTES, celery_app
from app.db.session import session_scope
from app.jobs.registry import KINDS
from app.jobs.store import rows
from app.users.models import User
from tests.stack import Stack, running_stack

JOB_TASKS = {
    "app.services.celery_report_tasks.generate_dummy_report": "reports",
    "app.services.celery_report_tasks.generate_heavy_report": "reports",
    "app.services.document_tasks.process_ocr": "documents",
    "app.services.document_tasks.generate_thumbnails": "documents",
    "app.services.notification_tasks.send_email": "notifications",
    "app.services.notification_tasks.send_bulk_email": "notifications",
}
HOUSEKEEPING_TASKS = {
    "app.services.celery_report_tasks.cleanup_old_report_jobs": "reports",
    "app.services.monitoring_tasks.health_check": "celery",
    "app.services.monitoring_tasks.collect_system_metrics": "celery",
    "app.services.monitoring_tasks.relay_outbox": "celery",
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("task-names")) as stack:
        worker = stack.worker("worker", "reports,documents,notifications,celery", "2")
        worker.start()
        yield stack


def test_every_job_kind_has_one_of_the_published_task_names() -> None:
    assert {kind.task_name for kind in KINDS.values()} == set(JOB_TASKS)
    celery_app.loader.import_default_modules()  # what a worker does at start: `include`
    registered = set(celery_app.tasks)
    assert set(JOB_TASKS) | set(HOUSEKEEPING_TASKS) <= registered


def test_each_task_name_routes_to_its_queue() -> None:
    router = celery_app.amqp.router
    for name, queue in {**JOB_TASKS, **HOUSEKEEPING_TASKS}.items():
        assert router.route({}, name)["queue"].name == queue, name
    assert all(glob.startswith("app.services.") for glob in TASK_ROUTES)


def _queued_dummy_job(owner_name: str) -> str:
    """A dummy job that a message of any job task name runs (the row says what to build)."""
    with session_scope() as session:
        owner = User(name=owner_name)
        session.add(owner)
        session.flush()
        job = rows.create_job(
            session=session,
            owner=owner,
            job_type="dummy",
            params={"delay_seconds": 0, "fail_times": 0},
            max_attempts=4,
            queued_on="celery",
        )
        return job.id


def _wait_for_task_line(stack: Stack, name: str, task_id: str, timeout: float = 30) -> str:
    pattern = re.compile(rf"Task {re.escape(name)}\[{task_id}\] (succeeded|raised)[^\n]*")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pattern.search(stack.workers[0].log())
        if found:
            return found.group(0)
        time.sleep(0.1)
    raise AssertionError(f"{name}[{task_id}] did not run: {stack.workers[0].log()[-3000:]}")


def test_messages_with_the_published_names_still_run(stack: Stack) -> None:
    producer = Celery("an-older-release", broker=stack.env["CELERY_BROKER_URL"])
    producer.conf.update(task_serializer="json", accept_content=["json"])
    try:
        for name, queue in JOB_TASKS.items():
            job_id = _queued_dummy_job(f"task-names-{uuid.uuid4().hex[:8]}")
            task_id = producer.send_task(name, args=[job_id], queue=queue).id
            line = _wait_for_task_line(stack, name, task_id)
            assert "succeeded" in line and "'status': 'completed'" in line, line
        for name, queue in HOUSEKEEPING_TASKS.items():
            task_id = producer.send_task(name, queue=queue).id
            assert "succeeded" in _wait_for_task_line(stack, name, task_id), name
    finally:
        producer.close()
