"""A dropped database connection never fails a job: `pg_terminate_backend` on every
connection of the service, again and again, while a batch runs on real worker processes
(the embedded executor's); each job completes, on its first attempt."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from app.db import loop_connections
from tests.conftest import running_service
from tests.faults import attempts_histogram, read_jobs, terminate_connections, wait_final

JOBS = 60
TERMINATIONS = 8


def test_terminated_connections_fail_no_job(tmp_path: Path) -> None:
    with running_service("postgresql", tmp_path, LOCAL_WORKERS=2) as service:
        url = service.settings.DATABASE_URL
        headers = service.headers(service.token())
        ids = []
        for _ in range(JOBS):
            response = service.client.post(
                "/reports/dummy", json={"delay_seconds": 0.4}, headers=headers
            )
            assert response.status_code == 202, response.text
            ids.append(response.json()["job_id"])

        killed = []
        while len(killed) < TERMINATIONS:
            time.sleep(0.9)  # mid-batch: claims, progress writes and finishes in flight
            killed.append(terminate_connections(url))
            if all(r.status == "completed" for r in read_jobs(url, ids).values()):
                break
        assert len(killed) >= 5 and min(killed) >= 1, killed  # each round cut connections

        rows = wait_final(url, ids, timeout=60)
        failed = {r.id: r.error for r in rows.values() if r.status != "completed"}
        assert not failed, failed
        print(f"terminated {killed}; attempts {attempts_histogram(rows)}")
        # The bookkeeping writes ride the fault out in place: no attempt is spent on it.
        assert attempts_histogram(rows) == {1: JOBS}


def test_a_status_poll_rides_out_terminated_connections(tmp_path: Path) -> None:
    """The status poll reads without a ping at checkout (one round trip, not two): after
    every connection of the service was terminated, the next polls still answer, the first
    on a second try."""
    with running_service("postgresql", tmp_path, LOCAL_WORKERS=1) as service:
        headers = service.headers(service.token())
        response = service.client.post("/reports/dummy", json={}, headers=headers)
        assert response.status_code == 202, response.text
        job_id = response.json()["job_id"]
        assert service.wait(job_id, headers)["status"] == "completed"  # the pool is warm
        for _ in range(3):
            assert terminate_connections(service.settings.DATABASE_URL) >= 1
            for _ in range(3):
                response = service.client.get(f"/reports/jobs/{job_id}", headers=headers)
                assert response.status_code == 200, response.text
                assert response.json()["status"] == "completed"


def test_a_status_poll_that_gets_no_answer_frees_its_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that stops answering the poll's read (here: the table locked by another
    session) fails that poll after `READ_TIMEOUT_SECONDS`, and the next polls, once the
    server answers again, are answered: no connection of the loop stays stuck."""
    monkeypatch.setattr(loop_connections, "READ_TIMEOUT_SECONDS", 0.5)
    with running_service("postgresql", tmp_path, LOCAL_WORKERS=1) as service:
        headers = service.headers(service.token())
        job_id = service.client.post("/reports/dummy", json={}, headers=headers).json()["job_id"]
        assert service.wait(job_id, headers)["status"] == "completed"  # the caller is known
        locker = create_engine(service.settings.DATABASE_URL, poolclass=NullPool)
        try:
            with locker.connect() as conn:
                conn.execute(text("LOCK TABLE report_jobs IN ACCESS EXCLUSIVE MODE"))
                with pytest.raises(TimeoutError):
                    service.client.get(f"/reports/jobs/{job_id}", headers=headers)
                conn.rollback()
            for _ in range(2 * loop_connections.CONNECTIONS_PER_LOOP):
                response = service.client.get(f"/reports/jobs/{job_id}", headers=headers)
                assert response.status_code == 200, response.text
        finally:
            locker.dispose()
