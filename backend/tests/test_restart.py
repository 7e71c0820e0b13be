"""Restart safety in embedded mode: SIGKILL the server mid-work, start it again, lose nothing."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_database
from tests.server import ServerProcess, pid_alive, reportctl


@pytest.mark.parametrize("db_kind", ["sqlite", "postgresql"])
def test_sigkill_with_jobs_queued_and_running_loses_nothing(db_kind: str, tmp_path: Path) -> None:
    database = fresh_database(db_kind, tmp_path, migrate=False)
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "VAR_DIR": str(tmp_path),
        "DATABASE_URL": database.url,
        "JOB_BACKEND": "local",
        "CELERY_BROKER_URL": "",
        "RQ_REDIS_URL": "",
        "LOCAL_WORKERS": "2",
        "LOG_LEVEL": "INFO",
    }
    server = ServerProcess(env, tmp_path / "server.log")
    try:
        reportctl("db", "upgrade", env=env)
        token = reportctl("token", "create", "crash-test", env=env).strip()
        headers = {"Authorization": f"Bearer {token}"}
        server.start()
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            ids = [
                client.post("/reports/dummy", json={"delay_seconds": 2}).json()["job_id"]
                for _ in range(6)
            ]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                statuses = [client.get(f"/reports/jobs/{i}").json()["status"] for i in ids]
                if statuses.count("started") == 2:
                    break
                time.sleep(0.1)
            assert statuses.count("started") == 2, statuses
            # Beyond QUOTA_ACTIVE_JOBS (4) the rest wait in the outbox: both must survive.
            assert statuses.count("queued") + statuses.count("pending") == 4, statuses

        workers = server.children()
        assert len(workers) >= 2, workers
        server.kill()
        deadline = time.monotonic() + 10
        while any(pid_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(pid_alive(pid) for pid in workers), "workers outlived the server"

        server.start()
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                jobs = [client.get(f"/reports/jobs/{i}").json() for i in ids]
                if all(job["status"] == "completed" for job in jobs):
                    break
                time.sleep(0.2)
            assert [job["status"] for job in jobs] == ["completed"] * 6, jobs
            # The two that were running were re-run once; the queued ones ran once.
            assert sorted(job["attempts"] for job in jobs) == [1, 1, 1, 1, 2, 2]
            for job in jobs:
                assert client.get(job["download_url"]).status_code == 200
    finally:
        server.stop()
        if database.drop:
            database.drop()
