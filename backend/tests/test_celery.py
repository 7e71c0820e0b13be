"""Celery over a private Redis with real worker processes: throughput, crashes, outages."""

from __future__ import annotations

import base64
import json
import pickle
import re
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import redis
from sqlalchemy import select

from tests.infra import WorkerProcess
from tests.stack import Stack, running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("celery")) as stack:
        worker = stack.worker("worker", "reports,celery", "4", name="celery")
        worker.start()
        yield stack


def _post(stack: Stack, headers: dict[str, str], n: int, **body: object) -> list[str]:
    ids = []
    for _ in range(n):
        response = stack.service.client.post("/reports/dummy", json=body, headers=headers)
        assert response.status_code == 202, response.text
        ids.append(response.json()["job_id"])
    return ids


def _wait_all(
    stack: Stack, ids: list[str], headers: dict[str, str], timeout: float = 120
) -> list[dict]:  # type: ignore[type-arg]
    return [stack.service.wait(job_id, headers, timeout=timeout) for job_id in ids]


def test_200_dummy_jobs_through_celery(stack: Stack) -> None:
    headers = stack.service.headers(stack.service.token())
    ids = _post(stack, headers, 200)
    jobs = _wait_all(stack, ids, headers)
    assert {job["status"] for job in jobs} == {"completed"}
    assert {job["backend"] for job in jobs} == {"celery"}
    assert {job["attempts"] for job in jobs} == {1}


def test_hybrid_status_shows_celery_state(stack: Stack) -> None:
    headers = stack.service.headers(stack.service.token())
    [job_id] = _post(stack, headers, 1, delay_seconds=2)
    running = stack.service.wait(job_id, headers, statuses={"started"})
    assert running["backend"] == "celery"
    assert running["backend_state"] in ("STARTED", "PENDING", "RECEIVED")
    done = stack.service.wait(job_id, headers)
    assert done["status"] == "completed"


def test_retries_back_off_with_growing_gaps_then_cap(stack: Stack) -> None:
    headers = stack.service.headers(stack.service.token())
    [ok, capped] = [_post(stack, headers, 1, fail_times=n)[0] for n in (2, 5)]
    done = stack.service.wait(ok, headers)
    assert done["status"] == "completed" and done["attempts"] == 3
    history = done["history"]
    assert [h["outcome"] for h in history] == ["retrying", "retrying", "completed"]
    starts = [datetime.fromisoformat(h["started_at"]) for h in history]
    ends = [datetime.fromisoformat(h["ended_at"]) for h in history]
    gaps = [(starts[i + 1] - ends[i]).total_seconds() for i in range(2)]
    base = stack.service.settings.JOB_RETRY_BACKOFF_SECONDS
    assert gaps[0] >= base * 0.9 and gaps[1] >= 2 * base * 0.9, gaps
    assert gaps[1] > gaps[0], gaps

    failed = stack.service.wait(capped, headers)
    assert failed["status"] == "failed" and failed["attempts"] == 4
    assert "gave up after 4 attempts" in failed["error"]


def test_pickle_message_is_refused_never_executed(stack: Stack, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (marker.touch, ())

    task_id = str(uuid.uuid4())
    body = base64.b64encode(pickle.dumps(((Exploit(),), {}, {}))).decode()
    message = {
        "body": body,
        "content-encoding": "binary",
        "content-type": "application/x-python-serialize",
        "headers": {
            "lang": "py",
            "task": "app.services.celery_report_tasks.generate_dummy_report",
            "id": task_id,
            "root_id": task_id,
            "parent_id": None,
            "group": None,
            "retries": 0,
            "eta": None,
            "expires": None,
            "argsrepr": "",
            "kwargsrepr": "",
        },
        "properties": {
            "correlation_id": task_id,
            "reply_to": "",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": "reports"},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": task_id,
        },
    }
    broker = redis.Redis.from_url(stack.redis.url(0))
    broker.lpush("reports", json.dumps(message))
    worker = stack.workers[0]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and "ContentDisallowed" not in worker.log():
        time.sleep(0.1)
    log = worker.log()
    assert "ContentDisallowed" in log or "Refusing to deserialize" in log, log[-2000:]
    assert not marker.exists()
    # The worker still works after refusing it.
    headers = stack.service.headers(stack.service.token())
    [job_id] = _post(stack, headers, 1)
    assert stack.service.wait(job_id, headers)["status"] == "completed"


def _completions(log: str, job_id: str) -> int:
    return len(re.findall(rf"job {job_id} attempt \d+ completed", log))


def _child_running_a_job(worker: WorkerProcess, ids: list[str], timeout: float = 30) -> int:
    """The pid of a pool child that is running one of `ids` right now (a child between two
    jobs would make the kill prove nothing)."""
    from app.db.session import session_scope
    from app.jobs.models import ReportJob

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = set(worker.children())
        with session_scope() as session:
            running = session.scalars(
                select(ReportJob.worker).where(ReportJob.id.in_(ids), ReportJob.status == "started")
            ).all()
        for name in running:
            pid = int(str(name).rsplit(":", 1)[1])
            if pid in children:
                return pid
        time.sleep(0.02)
    raise AssertionError("no pool child was running a job")


@pytest.mark.parametrize("kill", ["pool-child", "whole-worker"])
def test_sigkill_loses_no_job_and_runs_each_once(stack: Stack, kill: str) -> None:
    headers = stack.service.headers(stack.service.token())
    worker = stack.workers[0]
    ids = _post(stack, headers, 100, delay_seconds=0.5)
    stack.service.wait(ids[10], headers, statuses={"started", "completed"})
    if kill == "pool-child":
        import os
        import signal

        os.kill(_child_running_a_job(worker, ids), signal.SIGKILL)
    else:
        worker.kill_all()
        time.sleep(1)
        worker.start()
    jobs = _wait_all(stack, ids, headers, timeout=180)
    assert [job["status"] for job in jobs] == ["completed"] * 100
    log = worker.log()
    for job in jobs:
        assert _completions(log, job["job_id"]) == 1, job
        folder = stack.service.settings.storage_root / "artifacts" / job["job_id"]
        files = [f for f in folder.rglob("*") if f.is_file()]  # the completing attempt's only
        assert [f.relative_to(folder).as_posix() for f in files] == [
            f"{job['attempts']}/dummy-report.json"
        ]
        assert json.loads(files[0].read_text())["attempt"] == job["attempts"]
    assert any(job["attempts"] > 1 for job in jobs), "the kill hit no running job"


def test_soft_time_limit_fails_job_with_timed_out_and_removes_partial_files(
    stack: Stack,
) -> None:
    main = stack.workers[0]
    main.stop()
    strict = stack.worker(
        "worker",
        "reports",
        "1",
        name="strict",
        JOB_SOFT_TIME_LIMIT_SECONDS="1",
        JOB_HARD_TIME_LIMIT_SECONDS="10",
    )
    try:
        strict.start()
        headers = stack.service.headers(stack.service.token())
        [job_id] = _post(stack, headers, 1, delay_seconds=5)
        job = stack.service.wait(job_id, headers, timeout=30)
        assert job["status"] == "failed"
        assert job["error"] == "timed out after 1 s (soft time limit)"
        root = stack.service.settings.storage_root
        assert not list((root / "tmp").glob(f"{job_id}-*"))
        assert not (root / "artifacts" / job_id).exists()
    finally:
        strict.stop()
        stack.workers.remove(strict)
        main.start()
