"""RQ as a backend: the same jobs, the same retry policy, on a private Redis."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stack import Stack, running_stack


@pytest.fixture(scope="module")
def rq_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("rq"), JOB_BACKEND="rq") as stack:
        worker = stack.worker("rq-worker", "reports", name="rq", ready="Listening on")
        worker.start()
        yield stack


def test_200_dummy_jobs_through_rq(rq_stack: Stack) -> None:
    service = rq_stack.service
    headers = service.headers(service.token())
    ids = [
        service.client.post("/reports/dummy", headers=headers).json()["job_id"] for _ in range(200)
    ]
    jobs = [service.wait(job_id, headers, timeout=180) for job_id in ids]
    assert {job["status"] for job in jobs} == {"completed"}
    assert {job["backend"] for job in jobs} == {"rq"}


def test_rq_retries_use_the_same_policy(rq_stack: Stack) -> None:
    service = rq_stack.service
    headers = service.headers(service.token())
    job_id = service.client.post("/reports/dummy", json={"fail_times": 2}, headers=headers).json()[
        "job_id"
    ]
    job = service.wait(job_id, headers, timeout=60)
    assert job["status"] == "completed" and job["attempts"] == 3
