"""A Redis restart under a busy Celery worker: the worker lives on and consumes again.

Redis is killed and started again on the same port (no persistence, so the queue and the
unacknowledged index are gone) while the worker runs a job. kombu then restores and acks on
a channel whose connection was closed; the worker must survive that, reconnect, and take new
jobs, and the job that was running must still end.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.infra import WorkerProcess
from tests.server import pid_alive
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.timeout(60)  # the worker start included

CONSUME_AGAIN_WITHIN = 30.0
"""The brief's bound: from Redis answering again to a new job taken by the same worker."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Celery only: a job the worker does not take must not be run by the API's own executor.
    with running_stack(tmp_path_factory.mktemp("redis-restart"), JOB_BACKEND="celery") as stack:
        stack.worker("worker", "reports", "2", name="celery").start()
        yield stack


def _post(stack: Stack, headers: dict[str, str], **body: object) -> str:
    response = stack.service.client.post("/reports/dummy", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _worker_pids(worker: WorkerProcess) -> list[int]:
    """The supervisor, the Celery worker (its supervisor would restart a crashed one, hiding
    the crash) and the worker's pool."""
    assert worker.proc is not None
    return [worker.proc.pid, worker.main_pid(), *worker.children()]


def test_worker_with_a_job_in_flight_survives_a_redis_restart(stack: Stack) -> None:
    service = stack.service
    headers = service.headers(service.token())
    worker = stack.workers[0]
    in_flight = _post(stack, headers, delay_seconds=4)
    service.wait(in_flight, headers, statuses={"started"}, timeout=30)
    before = _worker_pids(worker)
    log_offset = len(worker.log())

    stack.redis.stop()
    time.sleep(1.5)  # long enough for the worker to notice: its BRPOP and heartbeat fail
    stack.redis.start()
    back_at = time.monotonic()

    # A new job, published while the worker is still reconnecting: the same worker takes it.
    fresh = _post(stack, headers)
    done = service.wait(fresh, headers, timeout=CONSUME_AGAIN_WITHIN)
    consumed_after = time.monotonic() - back_at
    assert done["status"] == "completed" and done["backend"] == "celery", done
    assert consumed_after < CONSUME_AGAIN_WITHIN
    log = worker.log()[log_offset:]
    assert f"job {fresh} attempt 1 completed" in log, log[-3000:]
    assert "Unrecoverable error" not in log, log[-3000:]
    assert [pid for pid in before if not pid_alive(pid)] == [], log[-3000:]

    # The job that was running when Redis went away ends too (its row is the database's).
    final = service.wait(in_flight, headers, timeout=15)
    assert final["status"] == "completed", final
    print(f"consumed again {consumed_after:.2f} s after Redis returned")
