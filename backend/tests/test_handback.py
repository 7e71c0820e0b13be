"""A job handed back after a crash is taken before newer work of the same queue.

One worker slot; job X runs, five newer jobs wait behind it; the process running X is killed.
The reaper hands X back (the heartbeat stops), and X must be the next job to start: no job
may start between X's hand-back and X's second attempt. Otherwise its recovery time would be
the whole backlog's. On the embedded executor (the poll keeps X's place by `queued_at`) and
on Celery (a hand-back is published at a higher priority than new work), real processes.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.core.config import set_settings
from app.db.session import session_scope
from app.jobs.models import ReportJob
from tests.conftest import Service, running_service
from tests.stack import running_stack

NEWER = 5
SETTINGS: dict[str, Any] = {
    "QUOTA_ACTIVE_JOBS": 0,  # one user's jobs all queued at once: the order is the broker's
    "JOB_HEARTBEAT_TIMEOUT_SECONDS": 2.0,
}


def _submit(service: Service, headers: dict[str, str], seconds: float) -> str:
    response = service.client.post(
        "/reports/dummy", json={"delay_seconds": seconds}, headers=headers
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _crash_and_check(service: Service) -> None:
    headers = service.headers(service.token())
    crashed = _submit(service, headers, 3)
    service.wait(crashed, headers, statuses={"started"}, timeout=30)
    newer = [_submit(service, headers, 1.5) for _ in range(NEWER)]
    with session_scope() as session:
        worker = session.scalar(select(ReportJob.worker).where(ReportJob.id == crashed))
    assert worker, "a started job names its worker (host:pid)"
    os.kill(int(worker.rpartition(":")[2]), signal.SIGKILL)

    job = service.wait(crashed, headers, timeout=90)
    others = [service.wait(job_id, headers, timeout=90) for job_id in newer]
    assert job["status"] == "completed" and job["attempts"] >= 2, job
    handed_back = datetime.fromisoformat(job["history"][0]["ended_at"])
    restarted = datetime.fromisoformat(job["started_at"])
    overtook = [
        other["job_id"]
        for other in others
        if handed_back < datetime.fromisoformat(other["started_at"]) < restarted
    ]
    assert overtook == [], f"newer jobs started before the handed-back one: {overtook}"
    assert any(datetime.fromisoformat(o["started_at"]) > restarted for o in others), (
        "the scenario did not test anything: every newer job started before the hand-back"
    )


def test_embedded_executor_takes_a_handed_back_job_first(tmp_path: Path) -> None:
    with running_service("sqlite", tmp_path, LOCAL_WORKERS=1, **SETTINGS) as service:
        _crash_and_check(service)


@pytest.fixture
def celery_service(tmp_path: Path) -> Iterator[Service]:
    with running_stack(tmp_path, JOB_BACKEND="celery", **SETTINGS) as stack:
        stack.worker("worker", "reports", "1", name="celery").start()
        set_settings(stack.service.settings)
        yield stack.service


def test_celery_takes_a_handed_back_job_first(celery_service: Service) -> None:
    _crash_and_check(celery_service)
