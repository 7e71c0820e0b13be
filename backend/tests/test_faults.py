"""The one classification of errors (`app.jobs.faults`), and the runner's pieces that lean on
it, one at a time: a write cut mid-statement, the history appended in SQL, a storage outage
in the store's own calls, and an attempt that loses its job while it finishes."""

from __future__ import annotations

import errno
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError, EndpointConnectionError
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy import create_engine, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.pool import NullPool

from app.core import metrics
from app.core.config import get_settings, set_settings
from app.db.base import utcnow
from app.db.clock import db_now
from app.db.session import session_scope
from app.jobs import artifacts, faults, heartbeat
from app.jobs.context import ArtifactFile, JobContext, JobOutput
from app.jobs.errors import PermanentJobError, TransientJobError
from app.jobs.models import ReportJob
from app.jobs.runner import run_job
from app.jobs.states import JobStatus
from app.jobs.store import rows, worker
from app.jobs.store.transitions import appended
from app.reports import dummy
from app.storage import ObjectMissing, StorageError, StorageUnavailable, get_store
from app.storage.file_store import FileStore
from app.storage.s3_store import _call
from app.users.models import User
from tests.conftest import fresh_database, make_settings
from tests.faults import unwritable

S = JobStatus


def _dropped() -> OperationalError:
    cause = Exception("terminating connection due to administrator command\nmore")
    return OperationalError("UPDATE report_jobs SET ...", {}, cause)


def _client_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "PutObject")


@pytest.mark.parametrize(
    ("error", "transient", "reason"),
    [
        (PermanentJobError("the dataset has no column 'x'"), False, "no column 'x'"),
        (TransientJobError("SMTP busy"), True, "SMTP busy"),
        (StorageUnavailable("the object store did not answer"), True, "storage unavailable"),
        (ObjectMissing("datasets/a"), False, "no stored object"),
        (StorageError("refused: AccessDenied"), False, "storage error: refused"),
        (_dropped(), True, "database unavailable: Exception: terminating connection"),
        (
            IntegrityError("INSERT", {}, Exception("duplicate key")),
            False,
            "internal error: Exception: duplicate key",
        ),
        (RedisConnectionError("Connection refused"), True, "broker unavailable"),
        (KombuOperationalError("no route"), True, "broker unavailable"),
        (ConnectionResetError(errno.ECONNRESET, "reset"), True, "ConnectionResetError"),
        (TimeoutError("timed out"), True, "TimeoutError"),
        (PermissionError(errno.EACCES, "Permission denied", "/data/x"), True, "/data/x"),
        (OSError(errno.ENOSPC, "No space left on device"), True, "No space left"),
        (OSError(errno.EIO, "Input/output error"), True, "Input/output"),
        (FileNotFoundError(errno.ENOENT, "No such file", "/x"), False, "internal error"),
        (ValueError("a bug"), False, "internal error: ValueError: a bug"),
    ],
)
def test_every_error_is_transient_or_permanent_with_a_reason(
    error: BaseException, transient: bool, reason: str
) -> None:
    fault = faults.classify(error)
    assert isinstance(fault, faults.Transient) is transient, fault
    assert reason in fault.reason
    assert "\n" not in fault.reason or isinstance(error, ValueError)  # the first line only


def test_only_the_unexpected_is_logged_as_a_bug() -> None:
    assert faults.classify(ValueError("x")) == faults.Permanent(
        "internal error: ValueError: x", bug=True
    )
    assert not faults.classify(PermanentJobError("bad input")).bug  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_client_error("SlowDown", 503), True),
        (_client_error("InternalError", 500), True),
        (_client_error("Throttling", 400), True),
        (_client_error("TooManyRequestsException", 429), True),
        (_client_error("AccessDenied", 403), False),
        (EndpointConnectionError(endpoint_url="http://s3"), True),
    ],
)
def test_s3_errors_become_transient_or_permanent_storage_errors(
    error: Exception, transient: bool
) -> None:
    def fail() -> None:
        raise error

    def fail_upload() -> None:  # the transfer manager wraps the ClientError in its own
        try:
            fail()
        except ClientError as exc:
            raise S3UploadFailedError(f"Failed to upload: {exc}") from exc

    for call in (fail, fail_upload):
        with pytest.raises(StorageError) as caught:
            _call("artifacts/j/1/a.pdf", call)
        assert isinstance(caught.value, StorageUnavailable) is transient


def test_an_unwritable_file_store_is_unavailable_not_broken(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "storage")
    source = tmp_path / "a.txt"
    source.write_text("a")
    with unwritable(tmp_path / "storage" / "artifacts"), pytest.raises(StorageUnavailable):
        store.put_file("artifacts/j/1/a.txt", source, "text/plain")
    assert source.exists()  # not consumed by the failed call
    store.put_file("artifacts/j/1/a.txt", source, "text/plain", move=True)
    assert store.size("artifacts/j/1/a.txt") == 1


# -- against a real database ---------------------------------------------------------------


def _new_job() -> str:
    with session_scope() as session:
        user = User(name=f"u-{utcnow().timestamp()}")
        session.add(user)
        session.flush()
        job = rows.create_job(
            session=session, owner=user, job_type="dummy", params={}, max_attempts=4
        )
        job.status = S.QUEUED
        return job.id


def _claimed(worker_name: str = "a") -> worker.Claim:
    claim = worker.claim(job_id=_new_job(), worker=worker_name, stale_after=60)
    assert claim is not None
    return claim


def _row(job_id: str) -> ReportJob:
    with session_scope() as session:
        row = session.get(ReportJob, job_id)
        assert row is not None
        return row


def test_history_entries_are_appended_in_sql_so_racing_writers_keep_both(
    database_url: str,
) -> None:
    claim = _claimed()
    worker.add_history(claim.job_id, {"attempt": 1, "outcome": "superseded"})
    assert worker.finish(
        job_id=claim.job_id,
        attempt=1,
        target=S.COMPLETED,
        history=appended({"attempt": 1, "outcome": "completed", "note": "ü"}),
        finished_at=db_now(),
    )
    worker.add_history(claim.job_id, {"attempt": 2, "outcome": "superseded"})
    assert [(h["attempt"], h["outcome"]) for h in _row(claim.job_id).history] == [
        (1, "superseded"),
        (1, "completed"),
        (2, "superseded"),
    ]
    assert _row(claim.job_id).history[1]["note"] == "ü"


@pytest.fixture
def postgres_url(tmp_path: Path) -> Any:
    database = fresh_database("postgresql", tmp_path)
    set_settings(make_settings(tmp_path, database.url))
    try:
        yield database.url
    finally:
        set_settings(None)
        assert database.drop is not None
        database.drop()


def test_a_write_cut_mid_statement_is_retried_on_a_new_connection(postgres_url: str) -> None:
    """`pg_terminate_backend` on the worker's connection while its UPDATE waits for a row
    lock: the finish is repeated on a fresh connection and wins, once."""
    claim = _claimed()
    locker = create_engine(postgres_url, poolclass=NullPool)
    admin = create_engine(postgres_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    done: dict[str, Any] = {}

    def finish() -> None:
        try:
            done["moved"] = worker.finish(
                job_id=claim.job_id,
                attempt=1,
                target=S.COMPLETED,
                history=appended({"attempt": 1, "outcome": "completed"}),
                finished_at=db_now(),
            )
        except Exception as exc:  # pragma: no cover - the failure the test looks for
            done["error"] = exc

    with locker.connect() as lock:
        lock.execute(
            text("SELECT 1 FROM report_jobs WHERE id = :id FOR UPDATE"), {"id": claim.job_id}
        )
        thread = threading.Thread(target=finish)
        thread.start()
        with admin.connect() as conn:
            waiting = _lock_waiter(conn)
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": waiting})
            time.sleep(0.3)  # the retry now waits on the lock too
        lock.rollback()
    thread.join(15)
    locker.dispose()
    admin.dispose()
    assert done == {"moved": True}
    row = _row(claim.job_id)
    assert row.status == S.COMPLETED and [h["outcome"] for h in row.history] == ["completed"]


def _lock_waiter(conn: Any) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE report_jobs%'"
            )
        ).scalar()
        if pid:
            return int(pid)
        time.sleep(0.05)
    raise AssertionError("the finish never waited on the lock")


def test_a_progress_write_that_meets_an_outage_does_not_kill_the_attempt(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    claim = _claimed()
    liveness = heartbeat.Liveness(claim.job_id, 1, get_settings())

    def down(*_args: object, **_values: object) -> bool:
        raise _dropped()

    monkeypatch.setattr(heartbeat, "PROGRESS_RETRY_SECONDS", 0.2)
    monkeypatch.setattr(heartbeat, "_touch", down)
    liveness._last_write = 0.0
    liveness.progress(50.0, "half")  # logged and skipped, never raised
    assert not liveness.lost.is_set()


def test_a_storage_outage_while_storing_retries_the_attempt(database_url: str) -> None:
    job_id = _new_job()
    artifacts_dir = get_settings().storage_root / "artifacts"
    with unwritable(artifacts_dir):
        outcome = run_job(job_id)
    assert outcome.status == "retrying"
    row = _row(job_id)
    assert row.status == S.RETRYING and "storage unavailable" in (row.error or "")
    assert not list(get_settings().scratch_dir.glob(f"{job_id}-*"))  # its file went too


def test_an_attempt_that_loses_its_job_while_finishing_touches_nothing_of_the_winner(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempt 1 finishes its work after attempt 2 took the job over (attempt 1's worker
    had stopped heart-beating): it is `superseded`, says so in the history, counts as no
    final status, and removes only its own object and scratch files."""
    settings = get_settings()
    job_id = _new_job()
    winner: dict[str, Any] = {}
    build = dummy.run

    def taken_over_meanwhile(ctx: JobContext) -> JobOutput:
        output = build(ctx)  # attempt 1's file, in its own scratch name
        second = worker.claim(job_id=job_id, worker="b", stale_after=-1)
        assert second is not None and second.attempts == 2
        live = JobContext(**{**vars(ctx), "attempt": 2})
        scratch = live.temp_path(".partial")  # attempt 2 is still working...
        built = live.temp_path(".json")
        built.write_text(json.dumps({"attempt": 2}))
        winner["scratch"] = scratch
        winner["stored"] = artifacts.store(  # ...and has stored its file already
            settings, job_id, ArtifactFile(built, "application/json", "r.json"), attempt=2
        )
        return output

    monkeypatch.setattr(dummy, "run", taken_over_meanwhile)
    before = _superseded_count()
    outcome = run_job(job_id)
    assert outcome.status == "superseded"
    assert _superseded_count() == before + 1
    row = _row(job_id)
    assert (row.status, row.attempts) == (S.STARTED, 2)  # attempt 2's, untouched
    assert [(h["attempt"], h["outcome"]) for h in row.history] == [(1, "superseded")]
    assert "taken over by attempt 2" in row.history[0]["error"]
    store = get_store(settings)
    assert store.exists(winner["stored"].relative_path)
    assert winner["scratch"].exists()
    assert not store.exists(f"artifacts/{job_id}/1/dummy-report.json")
    assert not list(settings.scratch_dir.glob(f"{job_id}-1-*"))


def _superseded_count() -> float:
    from tests.test_metrics import sample

    body, _ = metrics.render_latest()
    return sample(body.decode(), "report_jobs_superseded_total", job_type="dummy")
