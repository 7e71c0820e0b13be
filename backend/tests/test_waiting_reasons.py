"""One rule for which backend runs a job type, and a job that waits says why.

- The rule (`app.jobs.routing.backends_for`) for each mode and kind.
- Heavy reports with only RQ configured: refused at submit (503 naming CELERY_BROKER_URL),
  not accepted to wait forever.
- Celery broker down: a heavy job waits `pending`, its status says it waits for the Celery
  broker, and `/health/ready` lists the broker among what makes jobs wait.
- A queue no worker consumes: the job's status says so, `/health/ready` lists the queue, and
  the job runs once a worker for that queue starts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.config import set_settings
from app.jobs.registry import kind_of
from app.jobs.routing import backends_for
from tests.conftest import Service, make_settings, running_service
from tests.stack import Stack, running_stack

UNREACHABLE = "redis://127.0.0.1:1/0"
HEAVY = {"report_type": "excel", "dataset": {"source": "demo", "rows": 100}}
ALL = ("celery", "rq", "local")


@pytest.mark.parametrize(
    ("overrides", "configured", "job_type", "expected"),
    [
        ({"JOB_BACKEND": "auto"}, ("local",), "excel", ["local"]),  # embedded: everything
        ({"JOB_BACKEND": "auto", "CELERY_BROKER_URL": UNREACHABLE}, ALL, "excel", ["celery"]),
        ({"JOB_BACKEND": "auto", "CELERY_BROKER_URL": UNREACHABLE}, ALL, "dummy", list(ALL)),
        ({"JOB_BACKEND": "auto", "RQ_REDIS_URL": UNREACHABLE}, ("rq", "local"), "pdf", []),
        ({"JOB_BACKEND": "rq", "RQ_REDIS_URL": UNREACHABLE}, ("rq", "local"), "pdf", ["rq"]),
        ({"JOB_BACKEND": "local"}, ALL, "analysis", ["local"]),
    ],
)
def test_the_rule(
    tmp_path: Path,
    overrides: dict[str, str],
    configured: tuple[str, ...],
    job_type: str,
    expected: list[str],
) -> None:
    settings = make_settings(tmp_path, "sqlite://", **overrides)
    assert backends_for(kind_of(job_type), settings, configured) == expected


def test_heavy_reports_without_celery_are_refused_at_submit(tmp_path: Path) -> None:
    with running_service(
        "sqlite", tmp_path, JOB_BACKEND="auto", RQ_REDIS_URL=UNREACHABLE
    ) as service:
        headers = service.headers(service.token())
        refused = service.client.post("/reports/heavy", json=HEAVY, headers=headers)
        assert refused.status_code == 503, refused.text
        assert "CELERY_BROKER_URL" in refused.json()["detail"]


def test_a_job_waiting_for_a_down_broker_says_so(tmp_path: Path) -> None:
    with running_service(
        "sqlite", tmp_path, JOB_BACKEND="auto", CELERY_BROKER_URL=UNREACHABLE
    ) as service:
        headers = service.headers(service.token())
        accepted = service.client.post("/reports/heavy", json=HEAVY, headers=headers)
        assert accepted.status_code == 202, accepted.text
        job = service.client.get(accepted.json()["status_url"], headers=headers).json()
        assert job["status"] == "pending"
        assert "waiting for the Celery broker" in job["progress"]["message"], job
        ready = service.client.get("/health/ready").json()
        assert any("Celery broker unreachable" in note for note in ready["waiting"]), ready


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path, JOB_BACKEND="celery") as stack:
        stack.worker("worker", "celery", "1", name="default-only").start()
        set_settings(stack.service.settings)
        yield stack


def test_a_queue_nobody_consumes_is_named(stack: Stack) -> None:
    service = stack.service
    headers = service.headers(service.token())
    job_id = service.client.post("/reports/dummy", headers=headers).json()["job_id"]
    note = "no worker consumes queue reports on celery"
    job = _eventually_waiting(service, job_id, headers, note)
    assert job["status"] == "queued"
    assert note in " ".join(service.client.get("/health/ready").json()["waiting"])

    stack.worker("worker", "reports", "1", name="reports").start()
    assert service.wait(job_id, headers, timeout=60)["status"] == "completed"


def _eventually_waiting(
    service: Service, job_id: str, headers: dict[str, str], note: str
) -> dict[str, object]:
    deadline = time.monotonic() + 15  # the API asks the workers every CONSUMER_CHECK_SECONDS
    job: dict[str, object] = {}
    while time.monotonic() < deadline:
        job = service.client.get(f"/reports/jobs/{job_id}", headers=headers).json()
        if note in str(job["progress"]):
            return job
        time.sleep(0.2)
    raise AssertionError(f"the job never said {note!r}: {job}")
