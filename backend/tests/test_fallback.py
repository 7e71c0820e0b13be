"""Redis outages: light jobs fall back to the embedded executor, heavy ones wait."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.stack import Stack, running_stack


@pytest.fixture
def outage_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("outage")) as stack:
        worker = stack.worker("worker", "reports,celery", "2", name="celery")
        worker.start()
        yield stack


def test_redis_down_dummy_jobs_fall_back_to_embedded(outage_stack: Stack) -> None:
    service = outage_stack.service
    headers = service.headers(service.token())
    outage_stack.redis.stop()
    ids = []
    slowest = 0.0
    for _ in range(200):
        started = time.monotonic()
        response = service.client.post("/reports/dummy", headers=headers)
        slowest = max(slowest, time.monotonic() - started)
        assert response.status_code == 202
        ids.append(response.json()["job_id"])
    assert slowest < 2.0, f"a POST took {slowest:.2f}s with Redis down"
    jobs = [service.wait(job_id, headers, timeout=120) for job_id in ids]
    assert {job["status"] for job in jobs} == {"completed"}
    assert {job["backend"] for job in jobs} == {"local"}


HEAVY = {
    "report_type": "analysis",
    "dataset": {"source": "demo", "name": "sales", "rows": 500, "seed": 7},
}


def test_redis_down_heavy_jobs_wait_in_outbox_and_run_when_it_returns(
    outage_stack: Stack,
) -> None:
    service = outage_stack.service
    headers = service.headers(service.token())
    outage_stack.redis.stop()
    heavy, dummy, slowest = [], [], 0.0
    for _ in range(50):
        for body, path, ids in ((HEAVY, "/reports/heavy", heavy), ({}, "/reports/dummy", dummy)):
            started = time.monotonic()
            response = service.client.post(path, json=body, headers=headers)
            slowest = max(slowest, time.monotonic() - started)
            assert response.status_code == 202, response.text
            ids.append(response.json()["job_id"])
    assert slowest < 2.0, f"a POST took {slowest:.2f}s with Redis down"

    done = [service.wait(job_id, headers, timeout=120) for job_id in dummy]
    assert {(job["status"], job["backend"]) for job in done} == {("completed", "local")}
    waiting = [service.client.get(f"/reports/jobs/{i}", headers=headers).json() for i in heavy]
    assert {(job["status"], job["backend"]) for job in waiting} == {("pending", None)}

    outage_stack.redis.start()
    finished = [service.wait(job_id, headers, timeout=180) for job_id in heavy]
    assert {(job["status"], job["backend"]) for job in finished} == {("completed", "celery")}
    assert all(job["result"] for job in finished)
