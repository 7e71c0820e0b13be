"""`celery_manager.py status` against real processes: a private Redis, a real Celery worker
consuming `reports,celery` only, the API in-process. The screen names the workers and their
queues, flags a queue nobody consumes with its oldest waiting job, names a job whose worker
was SIGKILLed, shows retries and the last hour's failures, and still prints the database part
within seconds when the broker is down.

The tests run in file order on one stack: the last two kill the worker and then the broker.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from PIL import Image

from tests.infra import BACKEND_DIR
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.timeout(60)

API_HEARTBEAT_TIMEOUT = "600"
"""The API's reaper must leave the killed worker's job `started` for the screen to see."""


@dataclass
class Scene:
    stack: Stack
    headers: dict[str, str]
    document_job: str
    """A thumbnails job on `documents`, a queue the worker does not consume."""


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), "white").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    with running_stack(
        tmp_path_factory.mktemp("status"),
        JOB_BACKEND="celery",
        JOB_MAX_RETRIES=1,
        JOB_HEARTBEAT_TIMEOUT_SECONDS=API_HEARTBEAT_TIMEOUT,
    ) as stack:
        stack.worker("worker", "reports,celery", "2", name="first").start()
        headers = stack.service.headers(stack.service.token())
        uploaded = stack.service.client.post(
            "/documents",
            headers=headers,
            data={"thumbnails": "true"},
            files={"file": ("page.png", _png(), "image/png")},
        )
        assert uploaded.status_code == 201, uploaded.text
        job = uploaded.json()["jobs"]["thumbnails"]
        assert job["status"] == "queued" and job["backend"] == "celery", job
        yield Scene(stack, headers, job["job_id"])


def status(scene: Scene, *args: str, **env: str) -> tuple[str, float]:
    """Run the command as an operator does; its stdout and how long it took."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "celery_manager.py", "status", "--timeout", "1", *args],
        env={**scene.stack.env, **env},
        cwd=BACKEND_DIR,
        capture_output=True,
        text=True,
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    return done.stdout, elapsed


def _queue_line(screen: str, queue: str) -> str:
    return next(line for line in screen.splitlines() if line.startswith(f"  {queue} "))


def _section(screen: str, title: str) -> list[str]:
    """The lines of a section: its title line and the indented lines after it."""
    lines = screen.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith(" ")), None)
    return lines[start:end]


def _post_dummy(scene: Scene, **body: Any) -> str:
    response = scene.stack.service.client.post("/reports/dummy", json=body, headers=scene.headers)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _worker_of(job_id: str) -> str:
    from app.db.session import session_scope
    from app.jobs.models import ReportJob

    with session_scope() as session:
        job = session.get(ReportJob, job_id)
        assert job is not None and job.worker
        return job.worker


def test_lists_the_worker_and_flags_a_queue_nobody_consumes(scene: Scene) -> None:
    time.sleep(1.2)  # the waiting job is at least a second old
    screen, _ = status(scene)
    print(screen)
    assert "celery: broker up" in screen
    [worker] = _section(screen, "workers: 1")[1:]
    assert "[celery]" in worker and worker.endswith("queues: celery, reports"), worker

    documents = _queue_line(screen, "documents")
    assert "NO CONSUMER" in documents and "waiting 1" in documents, documents
    assert "messages 1" in documents  # the message sits on the broker, unread
    oldest = _section(screen, "queues:")
    [line] = [line for line in oldest if scene.document_job in line]
    assert line.startswith("    oldest ") and "thumbnails, queued on celery" in line, line
    age = re.search(r"(\d+) s old", line)
    assert age is not None and 1 <= int(age.group(1)) < 60, line
    assert "NO CONSUMER" in _queue_line(screen, "notifications")  # known, nobody consumes it
    for consumed in ("reports", "celery"):
        line = _queue_line(screen, consumed)
        assert "workers 1" in line and "NO CONSUMER" not in line, line

    data = json.loads(status(scene, "--json")[0])
    by_name = {queue["name"]: queue for queue in data["queues"]}
    assert by_name["documents"]["no_consumer"] is True
    assert by_name["documents"]["oldest"]["job_id"] == scene.document_job
    assert by_name["documents"]["oldest"]["age_seconds"] >= 1
    assert by_name["reports"]["no_consumer"] is False
    assert [w["queues"] for w in data["broker"]["workers"] if w["kind"] == "celery"] == [
        ["celery", "reports"]
    ]


def test_a_failed_job_shows_in_the_last_hours_failures(scene: Scene) -> None:
    job_id = _post_dummy(scene, fail_times=5)  # two attempts (JOB_MAX_RETRIES=1), both fail
    failed = scene.stack.service.wait(job_id, scene.headers, timeout=30)
    assert failed["status"] == "failed", failed
    screen, _ = status(scene)
    print(screen)
    failures = _section(screen, "failed in the last hour: 1")
    [line] = failures[1:]
    assert line.split()[:2] == ["dummy", "1"] and job_id in line, line
    assert "gave up after 2 attempts: simulated transient failure 2 of 5" in line, line


def test_a_killed_workers_started_job_is_named_and_retries_show_their_due_time(
    scene: Scene,
) -> None:
    first = scene.stack.workers[0]
    first.stop()
    # A long backoff, so that the retry below is still waiting when the screen is read.
    worker = scene.stack.worker(
        "worker", "reports,celery", "2", name="second", JOB_RETRY_BACKOFF_SECONDS="30"
    )
    worker.start()
    retrying = _post_dummy(scene, fail_times=1)
    scene.stack.service.wait(retrying, scene.headers, statuses={"retrying"}, timeout=20)
    running = _post_dummy(scene, delay_seconds=30)
    scene.stack.service.wait(running, scene.headers, statuses={"started"}, timeout=20)
    worker.kill_all()  # the supervisor, the Celery worker and its pool: no goodbye
    time.sleep(1.5)  # beats every 0.5 s while alive: now over a second without one

    screen, _ = status(scene, JOB_HEARTBEAT_TIMEOUT_SECONDS="1")
    print(screen)
    stuck = _section(screen, "stuck (started, no heartbeat for 1 s): 1")
    [line] = stuck[1:]
    assert line.split()[:4] == [running, "dummy", "on", "reports,"], line
    assert f"worker {_worker_of(running)}," in line, line
    beat = re.search(r"last beat (\d+) s ago", line)
    assert beat is not None and 1 <= int(beat.group(1)) < 30, line

    retries = _section(screen, "retrying: 1")
    assert retries[1].split()[:4] == [retrying, "dummy", "attempt", "1/2,"], retries
    due = re.search(r"due in (\d+) s", retries[1])
    assert due is not None and 0 < int(due.group(1)) <= 30, retries
    assert "simulated transient failure 1 of 1" in retries[2], retries
    assert "workers: 0" in screen
    assert "NO CONSUMER" in _queue_line(screen, "reports")  # its only worker is gone
    # With the default timeout (the API's, 600 s) the same job is not called stuck.
    calm, _ = status(scene, JOB_HEARTBEAT_TIMEOUT_SECONDS=API_HEARTBEAT_TIMEOUT)
    assert f"no heartbeat for {API_HEARTBEAT_TIMEOUT} s): 0" in calm and running not in calm


def test_with_the_broker_down_it_answers_within_seconds_with_the_database_part(
    scene: Scene,
) -> None:
    scene.stack.redis.stop()
    screen, elapsed = status(scene, JOB_HEARTBEAT_TIMEOUT_SECONDS="1")
    print(screen)
    assert elapsed < 8, f"took {elapsed:.1f} s"
    assert "celery: broker unreachable (" in screen
    assert "rq: unreachable" in screen
    documents = _queue_line(screen, "documents")
    assert "consumers unknown" in documents and "messages ?" in documents, documents
    assert "waiting 1" in documents
    assert any(scene.document_job in line for line in _section(screen, "queues:"))
    assert re.search(r"^stuck \(started, no heartbeat for 1 s\): \d+$", screen, re.M)
    assert re.search(r"^failed in the last hour: \d+$", screen, re.M)
    assert "jobs by status: " in screen and "failed=" in screen
