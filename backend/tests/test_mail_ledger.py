"""The e-mail ledger in the database, on SQLite and PostgreSQL: what the file could not do.

A retry on another host sees the first attempt's marks; two attempts racing on one job never
both claim a recipient; the marks go with their job; a big job reads its ledger once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, event, update

from app.db.session import get_engine
from app.jobs.errors import TransientJobError
from app.jobs.models import ReportJob
from app.notifications.jobs import run_bulk_email
from app.notifications.ledger import SENT, Ledger
from app.notifications.models import MailDelivery
from tests.test_notifications import (
    SmtpServer,
    bulk_params,
    ensure_job,
    make_ctx,
    make_settings,
    read_marks,
    running_smtp,
    write_marks,
)

KEY = "someone@example.com"


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp() as server:
        yield server


def test_a_retry_on_another_host_sees_the_first_attempts_marks(
    database_url: str, tmp_path: Path, smtp_server: SmtpServer
) -> None:
    host_a = make_settings(tmp_path / "host-a", smtp_server.port, DATABASE_URL=database_url)
    host_b = make_settings(tmp_path / "host-b", smtp_server.port, DATABASE_URL=database_url)
    assert host_a.storage_root != host_b.storage_root
    params = bulk_params(40)
    smtp_server.recorder.fail_data_once.add("user0017@example.com")

    with pytest.raises(TransientJobError, match="39 of 40 sent"):
        run_bulk_email(make_ctx(host_a, "bulk_email", params, attempt=1))
    output = run_bulk_email(make_ctx(host_b, "bulk_email", params, attempt=2))

    assert output.result is not None and output.result["sent"] == 40
    counts = smtp_server.recorder.count_by_recipient()
    assert len(counts) == 40 and set(counts.values()) == {1}
    assert not (host_a.storage_root / "ledgers").exists()
    assert read_marks(host_b, "job-1")["user0017@example.com"] == (SENT, 2)


def _race(workers: int, work: Callable[[int], None]) -> list[BaseException]:
    """Run `work(i)` in `workers` threads released at once; return what they raised."""
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            work(i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.mark.parametrize("same_attempt", [True, False], ids=["redelivery", "takeover"])
def test_concurrent_attempts_never_both_claim_a_recipient(
    database_url: str, tmp_path: Path, same_attempt: bool
) -> None:
    settings = make_settings(tmp_path, 25, DATABASE_URL=database_url)
    ensure_job(settings, "job-1", "bulk_email")
    claims: list[int] = []
    tried = threading.Barrier(8, timeout=60)  # every ledger stays open until all have tried

    def attempt(i: int) -> None:
        number = 1 if same_attempt else i + 1
        try:
            with Ledger.open(settings, "job-1", attempt=number) as ledger:
                entry = ledger.entries.get(KEY)
                if entry is None or not entry.terminal:  # what bulk.py and email.py do
                    ledger.begin(KEY)
                    claims.append(number)
                    ledger.record(KEY, SENT)
                tried.wait()
        except TransientJobError:
            tried.wait()
            raise

    errors = _race(8, attempt)
    assert len(claims) == 1, claims
    assert all(isinstance(exc, TransientJobError) for exc in errors), errors
    if same_attempt:
        assert len(errors) == 7
        assert all("already being sent by another worker" in str(exc) for exc in errors)
    status, by = read_marks(settings, "job-1")[KEY]
    assert by == claims[0] and status in (SENT, "unknown")  # unknown: taken over mid-send


def test_a_taken_over_attempt_stops_at_its_next_send(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, 25, DATABASE_URL=database_url)
    ensure_job(settings, "job-1", "bulk_email")
    old = Ledger.open(settings, "job-1", attempt=1)
    old.begin("a@example.com")  # its worker stalls here, mid-DATA
    with Ledger.open(settings, "job-1", attempt=2) as new:
        assert new.entries["a@example.com"].status == "unknown"  # never resent
        with pytest.raises(TransientJobError, match="taken over"):
            old.begin("b@example.com")
        old.record("a@example.com", SENT)
        old.close()  # not written: the new attempt owns the job now
        new.begin("b@example.com")
        new.record("b@example.com", SENT)
    marks = read_marks(settings, "job-1")
    assert marks["a@example.com"] == ("unknown", 1) and marks["b@example.com"] == (SENT, 2)


def test_a_recipient_claim_is_guarded_even_without_the_lease(
    database_url: str, tmp_path: Path
) -> None:
    """Defence in depth: a row that appeared or changed since `open` read it wins."""
    settings = make_settings(tmp_path, 25, DATABASE_URL=database_url)
    ensure_job(settings, "job-1", "bulk_email")
    write_marks(settings, "job-1", [("deferred@example.com", "deferred", 1)])
    table = MailDelivery.__table__
    with Ledger.open(settings, "job-1", attempt=2) as ledger:
        write_marks(settings, "job-1", [("new@example.com", "sending", 2)])
        with get_engine(database_url).begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.recipient == "deferred@example.com")
                .values(status="sending")
            )
        for key in ("new@example.com", "deferred@example.com"):
            with pytest.raises(TransientJobError, match="another worker"):
                ledger.begin(key)


def test_marks_are_deleted_with_their_job(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path, 25, DATABASE_URL=database_url)
    ensure_job(settings, "job-1", "bulk_email")
    with Ledger.open(settings, "job-1", attempt=1) as ledger:
        ledger.begin(KEY)
        ledger.record(KEY, SENT)
    assert read_marks(settings, "job-1")
    with get_engine(database_url).begin() as conn:
        conn.execute(delete(ReportJob).where(ReportJob.id == "job-1"))  # what retention does
    assert read_marks(settings, "job-1") == {}


def test_a_big_job_reads_its_ledger_once_and_commits_once_per_message(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    settings = make_settings(tmp_path, smtp_server.port, MAIL_BATCH_SIZE=50)
    engine = get_engine(settings.DATABASE_URL)
    statements: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    ctx = make_ctx(settings, "bulk_email", bulk_params(500))
    event.listen(engine, "before_cursor_execute", seen)
    try:
        output = run_bulk_email(ctx)
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert output.result is not None and output.result["sent"] == 500
    assert statements.count("SELECT") <= 2  # the lease and the entries, once per attempt
    assert statements.count("INSERT") <= 500 + 2  # a claim each; the marks ride along
    assert statements.count("UPDATE") <= 3 * 500  # lease check, earlier marks, unknowns
