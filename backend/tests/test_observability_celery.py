"""Observability against a real deployment: private Redis, real Celery worker processes.

- metrics counted in Celery's prefork children are right on the worker's own endpoint
  (WORKER_METRICS_PORT), including after a pool child is SIGKILLed mid-job;
- `/health/ready` turns 503 naming the backend when Redis stops, and 200 when it is back;
- Flower started by `celery_manager.py flower` refuses requests without credentials.
"""

from __future__ import annotations

import base64
import os
import signal
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.server import free_port
from tests.stack import Stack, running_stack
from tests.test_metrics import sample, series

KEYS = {"job_type": "dummy", "queue": "reports"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Every job on the broker at submit (one user's 15 jobs: no QUOTA_ACTIVE_JOBS hold).
    with running_stack(tmp_path_factory.mktemp("observability"), QUOTA_ACTIVE_JOBS=0) as stack:
        yield stack


@pytest.fixture(scope="module")
def worker_metrics(stack: Stack) -> str:
    """A reports worker (2 prefork children) with its metrics endpoint; returns the URL."""
    port = free_port()
    worker = stack.worker(
        "worker", "reports,celery", "2", name="reports", WORKER_METRICS_PORT=str(port)
    )
    worker.start()
    url = f"http://127.0.0.1:{port}/metrics"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            _get(url)
            return url
        except OSError:
            time.sleep(0.2)
    pytest.fail(
        f"worker metrics endpoint {url} not reachable: is metrics_celery.install_celery_hooks()"
        f" called in app/core/celery_app.py? Log tail:\n{worker.log()[-2000:]}"
    )


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def _counts(text: str) -> dict[str, float]:
    return {
        "completed": sample(text, "report_jobs_total", status="completed", **KEYS),
        "failed": sample(text, "report_jobs_total", status="failed", **KEYS),
        "retries": sample(text, "report_jobs_retries_total", **KEYS),
        "active": sample(text, "report_jobs_active", **KEYS),
        "durations": sample(text, "report_jobs_duration_seconds_count", **KEYS),
    }


def _eventually(
    read: Callable[[], dict[str, float]],
    want: Callable[[dict[str, float]], bool],
    timeout: float = 60,
) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    value = read()
    while not want(value) and time.monotonic() < deadline:
        time.sleep(0.2)
        value = read()
    return value


def _post(stack: Stack, headers: dict[str, str], **body: object) -> str:
    response = stack.service.client.post("/reports/dummy", json=body, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["backend"] == "celery", response.json()
    return str(response.json()["job_id"])


def test_the_worker_endpoint_shows_every_kind_before_any_job(worker_metrics: str) -> None:
    """Zeros from the start (worker_ready), so rate() and absent() work on an idle worker."""
    from app.jobs.registry import KINDS

    text = _get(worker_metrics)
    for kind in KINDS.values():
        keys = {"job_type": kind.job_type, "queue": kind.queue}
        assert series(text, "report_jobs_retries_total", **keys) == 0, keys
        assert series(text, "report_jobs_total", status="failed", **keys) == 0, keys
        assert series(text, "report_jobs_duration_seconds_count", **keys) == 0, keys
    assert "report_jobs_submitted_total{" not in text  # workers submit nothing


def test_prefork_children_metrics_on_the_worker_endpoint(stack: Stack, worker_metrics: str) -> None:
    headers = stack.service.headers(stack.service.token())
    before = _counts(_get(worker_metrics))
    ids = [_post(stack, headers) for _ in range(12)]
    ids += [_post(stack, headers, fail_times=1) for _ in range(2)]
    ids.append(_post(stack, headers, fail_times=5))
    jobs = [stack.service.wait(job_id, headers, timeout=120) for job_id in ids]
    assert [job["status"] for job in jobs] == ["completed"] * 14 + ["failed"]
    pids = {h["worker"] for job in jobs for h in job["history"]}
    assert len(pids) >= 2, pids  # the work was spread over both pool children

    max_attempts = stack.service.settings.max_attempts
    expected = {
        "completed": 14,
        "failed": 1,
        "retries": 2 + (max_attempts - 1),
        "active": 0,
        "durations": 15,
    }

    def delta() -> dict[str, float]:
        now = _counts(_get(worker_metrics))
        return {k: now[k] - (before[k] if k != "active" else 0) for k in now}

    assert _eventually(delta, lambda d: d == expected) == expected
    text = _get(worker_metrics)
    assert sample(text, "report_jobs_wait_seconds_count", **KEYS) >= 15
    # The API does not run these jobs; it shows the broker's queues at scrape time.
    api = stack.service.client.get("/metrics")
    assert api.status_code == 200
    assert "report_jobs_queue_length" in api.text
    assert 'backend="celery"' in api.text


def test_active_gauge_survives_a_killed_pool_child(stack: Stack, worker_metrics: str) -> None:
    headers = stack.service.headers(stack.service.token())
    before = _counts(_get(worker_metrics))
    job_id = _post(stack, headers, delay_seconds=4)
    stack.service.wait(job_id, headers, statuses={"started"})
    running = _eventually(
        lambda: _counts(_get(worker_metrics)), lambda c: c["active"] == 1, timeout=10
    )
    assert running["active"] == 1
    worker = stack.workers[0]
    for pid in worker.children():
        os.kill(pid, signal.SIGKILL)
    # The dead child's "active" is dropped at the next scrape, not counted forever.
    after_kill = _eventually(
        lambda: _counts(_get(worker_metrics)), lambda c: c["active"] == 0, timeout=10
    )
    assert after_kill["active"] == 0
    # The job is delivered again and completes once; what the dead child counted stays.
    assert stack.service.wait(job_id, headers, timeout=120)["status"] == "completed"
    final = _eventually(
        lambda: _counts(_get(worker_metrics)),
        lambda c: c["completed"] - before["completed"] == 1,
        timeout=30,
    )
    assert final["completed"] - before["completed"] == 1
    assert final["active"] == 0


def test_flower_refuses_requests_without_credentials(stack: Stack) -> None:
    port = free_port()
    refused = stack.worker(
        "flower",
        str(port),
        name="flower-open",
        ready="Visit me",
        FLOWER_USER="",
        FLOWER_PASSWORD="",
    )
    with pytest.raises(RuntimeError, match="FLOWER_USER and FLOWER_PASSWORD"):
        refused.start(timeout=30)

    flower = stack.worker(
        "flower",
        str(port),
        "--address",
        "127.0.0.1",
        name="flower",
        ready="Visit me",
        FLOWER_USER="ops",
        FLOWER_PASSWORD="s3cret-pass",
    )
    flower.start(timeout=60)
    assert flower.proc is not None
    # `ps` shows every user the command line: the password travels in the environment.
    cmdline = Path(f"/proc/{flower.proc.pid}/cmdline").read_bytes()
    assert b"flower" in cmdline and b"s3cret-pass" not in cmdline
    base = f"http://127.0.0.1:{port}"
    with httpx.Client(timeout=10) as client:
        anonymous = client.get(f"{base}/")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Basic")
        assert client.get(f"{base}/api/workers").status_code == 401
        assert client.get(f"{base}/", auth=("ops", "wrong")).status_code == 401
        assert client.get(f"{base}/", auth=("ops", "s3cret-pass")).status_code == 200
        # The container health check needs no credentials and reveals nothing.
        health = client.get(f"{base}/healthcheck")
        assert health.status_code == 200 and health.text == "OK"
    token = base64.b64encode(b"ops:s3cret-pass").decode()
    request = urllib.request.Request(
        f"{base}/api/workers", headers={"Authorization": f"Basic {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    flower.stop()


def test_ready_turns_503_when_redis_stops_and_200_when_back(stack: Stack) -> None:
    client = stack.service.client
    ok = client.get("/health/ready")
    assert ok.status_code == 200, ok.text
    assert ok.json()["backend"] == "celery"
    stack.redis.stop()
    try:
        started = time.monotonic()
        down = client.get("/health/ready")
        assert time.monotonic() - started < 5  # bounded, never hanging on the broker
        assert down.status_code == 503, down.text
        body = down.json()
        assert body["failing"] == ["celery"]
        assert body["checks"]["database"]["ok"] is True
        assert "celery" in body["detail"]
        assert client.get("/health/live").status_code == 200
    finally:
        stack.redis.start()
    deadline = time.monotonic() + 20
    back = client.get("/health/ready")
    while back.status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
        back = client.get("/health/ready")
    assert back.status_code == 200, back.text
