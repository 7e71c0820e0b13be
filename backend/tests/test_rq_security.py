"""The RQ worker runs this project's entry point and nothing else, and reads JSON only.

Whoever can write to the RQ Redis must not run code as the worker: a stock `rq worker`
imports any function a message names and unpickles any payload. Every attack here is pushed
straight onto the private Redis with a stock `rq.Queue`, the way an intruder would.
"""

from __future__ import annotations

import os
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Callback, Queue
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from app.jobs.backends.rq_backend import RQ_ENTRY_POINT
from app.jobs.backends.rq_worker import GuardedJob, RefusedJob, refusal
from tests.stack import Stack, running_stack

QUEUE = "reports"


class Touch:
    """Unpickling this runs `touch <marker>`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def rq_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("rq-security"), JOB_BACKEND="rq") as stack:
        worker = stack.worker("rq-worker", QUEUE, name="rq", ready="Listening on")
        worker.start()
        yield stack


def _redis(stack: Stack) -> redis.Redis:
    return redis.Redis.from_url(stack.service.settings.RQ_REDIS_URL)


def _wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_attacks_pushed_on_the_queue_never_run(rq_stack: Stack) -> None:
    conn = _redis(rq_stack)
    markers = {name: rq_stack.var_dir / f"pwned-{name}" for name in ("json", "pickle", "reduce")}
    markers["raw"] = rq_stack.var_dir / "pwned-raw"
    json_queue = Queue(QUEUE, connection=conn, serializer=JSONSerializer)
    pickle_queue = Queue(QUEUE, connection=conn)  # the default serializer: pickle

    attacks = {
        "json": json_queue.enqueue("os.system", f"touch {markers['json']}").id,
        "pickle": pickle_queue.enqueue("os.system", f"touch {markers['pickle']}").id,
        # The allowed name, with a payload that runs on unpickling.
        "reduce": pickle_queue.enqueue(RQ_ENTRY_POINT, Touch(markers["reduce"])).id,
        "callback": json_queue.enqueue(
            RQ_ENTRY_POINT, "no-such-job", on_success=Callback("os.system")
        ).id,
        "arguments": json_queue.enqueue(RQ_ENTRY_POINT, "a", "b").id,
    }
    # A hand-made job hash: a raw pickle as the payload and as the meta.
    conn.hset(
        Job.key_for("raw-pickle"),
        mapping={
            "data": pickle.dumps(Touch(markers["raw"])),
            "meta": pickle.dumps(Touch(markers["raw"])),
            "origin": QUEUE,
            "status": "queued",
            "description": "raw pickle",
        },
    )
    conn.rpush(json_queue.key, "raw-pickle")
    attacks["raw"] = "raw-pickle"

    worker = rq_stack.workers[0]

    def all_refused() -> bool:
        log = worker.log()
        return all(f"REFUSED job {job_id} on queue {QUEUE}" in log for job_id in attacks.values())

    _wait_for(all_refused, 60, "the worker to refuse every attack")
    time.sleep(1)  # a horse that ran anything would have touched its marker by now
    assert [name for name, marker in markers.items() if marker.exists()] == []

    log = worker.log()
    assert "function 'os.system' is not app.services.rq_tasks.run" in log
    assert "does not decode as JSON" in log
    assert "os.system('touch" in log  # the pickle attack's description names the function
    assert "names callbacks ['os.system']" in log
    assert "takes one job id" in log
    failed = FailedJobRegistry(QUEUE, connection=conn, serializer=JSONSerializer).get_job_ids()
    assert {attacks[name] for name in ("json", "pickle", "reduce", "callback")} <= set(failed)
    assert worker.proc is not None and worker.proc.poll() is None

    # Still alive and useful: a normal job runs to completion on RQ.
    service = rq_stack.service
    headers = service.headers(service.token())
    job_id = service.client.post("/reports/dummy", headers=headers).json()["job_id"]
    job = service.wait(job_id, headers, timeout=60)
    assert job["status"] == "completed" and job["backend"] == "rq"


def test_the_publisher_writes_json(rq_stack: Stack) -> None:
    service = rq_stack.service
    headers = service.headers(service.token())
    job_id = service.client.post("/reports/dummy", headers=headers).json()["job_id"]
    service.wait(job_id, headers, timeout=60)
    job = Job.fetch(job_id, connection=_redis(rq_stack), serializer=JSONSerializer)
    assert job.func_name == RQ_ENTRY_POINT and list(job.args) == [job_id]


def test_a_guarded_job_resolves_only_the_entry_point() -> None:
    conn = redis.Redis()  # never connected: nothing here is saved
    evil = GuardedJob.create("os.system", args=["id"], connection=conn, serializer=JSONSerializer)
    assert refusal(evil) == "function 'os.system' is not app.services.rq_tasks.run"
    with pytest.raises(RefusedJob):
        evil.func  # noqa: B018
    ours = GuardedJob.create(
        RQ_ENTRY_POINT, args=["job-1"], connection=conn, serializer=JSONSerializer
    )
    assert refusal(ours) is None
    assert ours.success_callback is None and ours.failure_callback is None
    pickled = GuardedJob.create(RQ_ENTRY_POINT, args=["job-1"], connection=conn)
    decoded_as_json = GuardedJob(id=pickled.id, connection=conn, serializer=JSONSerializer)
    decoded_as_json.data = pickled.data
    assert "does not decode as JSON" in (refusal(decoded_as_json) or "")
