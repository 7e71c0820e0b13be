"""Fair shares: one user's backlog never makes another user's single job wait behind it.

User A submits a backlog of jobs that fills every worker, then user B submits one. B's job
must be the next to start when a worker frees, not wait behind A's backlog: none of A's
waiting jobs may start between B's submission and B's start. Without the fair shares all of
them would (first in, first out). The same on the embedded executor, Celery and RQ, with
real worker processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session

from app.core.config import set_settings
from app.db.session import session_scope
from app.jobs.store import rows, sweeps
from app.users.models import User
from tests.conftest import Service, running_service
from tests.stack import running_stack

BACKLOG = 10
CAP = 2
JOB_SECONDS = 0.8


def _submit(service: Service, headers: dict[str, str]) -> str:
    response = service.client.post(
        "/reports/dummy", json={"delay_seconds": JOB_SECONDS}, headers=headers
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _overtakers(service: Service) -> tuple[int, dict[str, Any]]:
    """Run the scenario; (A's jobs started between B's submission and B's start, B's job)."""
    a = service.headers(service.token())
    b = service.headers(service.token())
    backlog = [_submit(service, a) for _ in range(BACKLOG)]
    for job_id in backlog[:CAP]:  # A holds every worker before B comes
        service.wait(job_id, a, statuses={"started", "completed"}, timeout=30)
    single = _submit(service, b)
    b_job = service.wait(single, b, timeout=60)
    a_jobs = [service.wait(job_id, a, timeout=90) for job_id in backlog]
    assert b_job["status"] == "completed"
    assert [job["status"] for job in a_jobs] == ["completed"] * BACKLOG
    submitted = datetime.fromisoformat(b_job["created_at"])
    started = datetime.fromisoformat(b_job["started_at"])
    overtook = [
        job for job in a_jobs if submitted < datetime.fromisoformat(job["started_at"]) < started
    ]
    return len(overtook), b_job


def _assert_fair(service: Service) -> None:
    overtook, b_job = _overtakers(service)
    # B's job is next once a worker frees: none of A's may go first (one, if the finishing
    # worker's release of A's next job wins a race with B's message).
    assert overtook <= 1, (
        f"{overtook} of user A's {BACKLOG - CAP} waiting jobs started before user B's one job "
        f"(QUOTA_ACTIVE_JOBS={CAP}): {b_job}"
    )


def test_embedded_executor_is_fair(tmp_path: Path) -> None:
    with running_service("sqlite", tmp_path, LOCAL_WORKERS=2, QUOTA_ACTIVE_JOBS=CAP) as service:
        _assert_fair(service)


@pytest.fixture
def celery_service(tmp_path: Path) -> Iterator[Service]:
    with running_stack(tmp_path, JOB_BACKEND="celery", QUOTA_ACTIVE_JOBS=CAP) as stack:
        stack.worker("worker", "reports,celery", "2", name="celery").start()
        set_settings(stack.service.settings)
        yield stack.service


def test_celery_is_fair(celery_service: Service) -> None:
    _assert_fair(celery_service)


@pytest.fixture
def rq_service(tmp_path: Path) -> Iterator[Service]:
    with running_stack(tmp_path, JOB_BACKEND="rq", QUOTA_ACTIVE_JOBS=CAP) as stack:
        for index in range(2):
            stack.worker("rq-worker", "reports", name=f"rq{index}", ready="Listening on").start()
        set_settings(stack.service.settings)
        yield stack.service


def test_rq_is_fair(rq_service: Service) -> None:
    _assert_fair(rq_service)


def test_without_the_cap_the_backlog_goes_first(tmp_path: Path) -> None:
    """The scenario can fail: with QUOTA_ACTIVE_JOBS=0 (off), B waits behind A's backlog."""
    with running_service("sqlite", tmp_path, LOCAL_WORKERS=2, QUOTA_ACTIVE_JOBS=0) as service:
        overtook, _ = _overtakers(service)
    assert overtook >= BACKLOG - CAP - 1


def _waiting_jobs(session: Session, user: User, count: int, start: datetime) -> list[str]:
    ids = []
    for index in range(count):
        job = rows.create_job(
            session=session, owner=user, job_type="dummy", params={}, max_attempts=4
        )
        job.created_at = start + timedelta(seconds=index)
        ids.append(job.id)
    return ids


def test_waiting_jobs_come_in_turns_over_users(database_url: str) -> None:
    """One user's older backlog does not fill the batch: each user's oldest, then each
    user's second..., on SQLite and PostgreSQL (`row_number() OVER (PARTITION BY owner)`)."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with session_scope() as session:
        users = [User(name=f"fair-{i}") for i in range(3)]
        session.add_all(users)
        session.flush()
        a = _waiting_jobs(session, users[0], 5, start)
        b = _waiting_jobs(session, users[1], 2, start + timedelta(minutes=1))
        c = _waiting_jobs(session, users[2], 1, start + timedelta(minutes=2))
    with session_scope() as session:
        order = [
            job_id
            for job_id, _ in sweeps.pending_by_turn(session=session, older_than=0, per_owner=None)
        ]
        capped = [
            job_id
            for job_id, _ in sweeps.pending_by_turn(
                session=session, older_than=0, per_owner=2, limit=4
            )
        ]
    assert order == [a[0], b[0], c[0], a[1], b[1], a[2], a[3], a[4]]
    assert capped == [a[0], b[0], c[0], a[1]]
