"""Structured logs: every line a job writes carries its job_id, in JSON (prod) and dev lines."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from app.core.config import Settings, get_settings
from app.core.logging import current_job, job_log_context, make_handler
from app.db.session import session_scope
from app.jobs.context import JobContext, JobOutput
from app.jobs.registry import KINDS, JobKind
from app.jobs.runner import run_job
from app.jobs.store import rows
from app.users.models import User

LOGGER = "tests.joblog"


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """Two handlers on one logger: prod (JSON) and dev formatting of the same records."""
    prod, dev = io.StringIO(), io.StringIO()
    logger = logging.getLogger(LOGGER)
    handlers = [
        make_handler(
            Settings(ENVIRONMENT="prod", SECRET_KEY="k" * 40, _env_file=None),  # type: ignore[call-arg]
            prod,
        ),
        make_handler(Settings(ENVIRONMENT="dev", _env_file=None), dev),  # type: ignore[call-arg]
    ]
    for handler in handlers:
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield prod, dev
    finally:
        for handler in handlers:
            logger.removeHandler(handler)


def _json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_lines_inside_a_job_carry_it_and_lines_outside_do_not(
    capture: tuple[io.StringIO, io.StringIO],
) -> None:
    prod, dev = capture
    log = logging.getLogger(LOGGER)
    log.info("before")
    with job_log_context("job-1", "pdf", 2):
        log.info("inside")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.info("after")
    before, inside, failed, after = _json_lines(prod)
    assert "job_id" not in before and "job_id" not in after
    assert inside["job_id"] == "job-1" and inside["job_type"] == "pdf" and inside["attempt"] == 2
    assert inside["message"] == "inside" and inside["level"] == "INFO"
    assert failed["job_id"] == "job-1" and "ValueError: boom" in str(failed["exc"])
    lines = dev.getvalue().splitlines()
    assert "[job job-1 pdf#2]: inside" in lines[1]
    assert "[job" not in lines[0] and "[job" not in lines[-1]


def test_threads_of_a_lone_job_carry_it_but_concurrent_jobs_stay_apart(
    capture: tuple[io.StringIO, io.StringIO],
) -> None:
    prod, _ = capture
    log = logging.getLogger(LOGGER)

    with job_log_context("solo", "dummy", 1):
        helper = threading.Thread(target=lambda: log.info("from a helper thread"))
        helper.start()
        helper.join()
    assert _json_lines(prod)[-1]["job_id"] == "solo"

    # Two jobs at once in one process (a threads pool): each line gets its own job, and a
    # thread that belongs to neither gets none rather than a wrong one.
    barrier = threading.Barrier(3)

    def job(job_id: str) -> None:
        with job_log_context(job_id, "dummy", 1):
            barrier.wait()
            log.info("working on %s", job_id)
            barrier.wait()

    workers = [threading.Thread(target=job, args=(name,)) for name in ("a", "b")]
    for worker in workers:
        worker.start()
    barrier.wait()
    log.info("bystander")
    assert current_job() is None
    barrier.wait()
    for worker in workers:
        worker.join()
    lines = _json_lines(prod)[1:]
    by_message = {str(line["message"]): line.get("job_id") for line in lines}
    assert by_message == {"working on a": "a", "working on b": "b", "bystander": None}


def _logging_handler(ctx: JobContext) -> JobOutput:
    log = logging.getLogger(LOGGER)
    log.info("building %s", ctx.params["name"])
    helper = threading.Thread(target=lambda: log.warning("helper thread says hi"))
    helper.start()
    helper.join()
    return JobOutput(result={"ok": True})


def test_run_job_tags_the_handler_lines(
    database_url: str, capture: tuple[io.StringIO, io.StringIO], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        KINDS,
        "logtest",
        JobKind("logtest", "reports", "unused", "tests.test_logging:_logging_handler"),
    )
    with session_scope() as session:
        owner = User(name="log-owner")
        session.add(owner)
        session.flush()
        job = rows.create_job(
            session=session,
            owner=owner,
            job_type="logtest",
            params={"name": "x"},
            max_attempts=1,
        )
        job_id = job.id
    outcome = run_job(job_id, settings=get_settings())
    assert outcome.status == "completed"
    prod, dev = capture
    lines = _json_lines(prod)
    assert [line["message"] for line in lines] == ["building x", "helper thread says hi"]
    assert {line["job_id"] for line in lines} == {job_id}
    assert {line["attempt"] for line in lines} == {1}
    assert all(f"[job {job_id} logtest#1]" in line for line in dev.getvalue().splitlines())
