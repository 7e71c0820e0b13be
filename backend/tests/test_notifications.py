"""E-mail against a real SMTP server (aiosmtpd) on loopback that counts what arrives.

The handlers are called as the runner calls them, with a JobContext; a retry is simulated by
calling again with attempt=2 (the runner's own retry loop is tested with the core).
"""

from __future__ import annotations

import asyncio
import email
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import insert, select

from app.core.config import Settings, set_settings
from app.db.all_models import metadata
from app.db.session import get_engine
from app.jobs.context import JobContext
from app.jobs.errors import JobCancelled, PermanentJobError, TransientJobError
from app.jobs.models import ReportJob
from app.notifications import smtp
from app.notifications.bulk import TokenBucket
from app.notifications.email import normalise_address
from app.notifications.jobs import notify_report_ready, run_bulk_email, run_email
from app.notifications.ledger import Ledger
from app.notifications.models import MailDelivery
from app.notifications.templates import TemplateProblem, compile_template, load_template
from app.users.models import User
from tests.conftest import DATABASES, Service, running_service


# --------------------------------------------------------------------------- SMTP server
@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class Recorder:
    """An aiosmtpd handler that records every accepted message and can misbehave on cue."""

    messages: list[Received] = field(default_factory=list)
    fail_data_once: set[str] = field(default_factory=set)  # 451 at end of DATA, once
    fail_data_always: set[str] = field(default_factory=set)  # 451 at end of DATA, forever
    reject_rcpt: set[str] = field(default_factory=set)  # 550 at RCPT
    drop_after_accept: set[str] = field(default_factory=set)  # store, then cut the line
    reject_sender: bool = False
    per_connection_limit: int = 0  # 421 and hang up after this many messages (-1: at once)
    sessions: Counter[int] = field(default_factory=Counter)  # messages per connection
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if self.reject_sender:
            return "553 5.7.1 sender not allowed"
        limit = self.per_connection_limit
        if limit and self.sessions[id(session)] >= max(limit, 0):
            # Hang up once the 421 is written, as a real server does: closing first would
            # race the reply (the client then sees a bare disconnect, not the 421).
            asyncio.get_running_loop().call_soon(server.transport.close)
            return "421 4.7.0 too many messages on this connection"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.reject_rcpt:
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        rcpts = list(envelope.rcpt_tos)
        with self.lock:
            for address in rcpts:
                if address in self.fail_data_always:
                    return "451 4.3.0 mailbox busy, try later"
                if address in self.fail_data_once:
                    self.fail_data_once.discard(address)
                    return "451 4.3.0 temporary failure, try again"
            message = email.message_from_bytes(envelope.content, policy=policy.default)
            self.messages.append(Received(envelope.mail_from, rcpts, message))
            self.sessions[id(session)] += 1
            if any(address in self.drop_after_accept for address in rcpts):
                # Accepted and stored, but the reply never reaches the client.
                server.transport.close()
                await asyncio.sleep(0)
        return "250 2.0.0 queued"

    def count_by_recipient(self) -> Counter[str]:
        with self.lock:
            return Counter(address for msg in self.messages for address in msg.rcpt_tos)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SmtpServer:
    recorder: Recorder
    port: int


@contextmanager
def running_smtp() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a free port that records what it receives."""
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer(recorder, port)
    finally:
        controller.stop()


@contextmanager
def running_mail_service(
    kind: str, var_dir: Path, smtp: SmtpServer, **overrides: Any
) -> Iterator[Service]:
    """The conftest service with its workers pointed at `smtp`, unthrottled."""
    with running_service(
        kind,
        var_dir,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp.port,
        MAIL_FROM="reports@example.com",
        MAIL_RATE_PER_SECOND=0,
        MAIL_BATCH_SIZE=50,
        **overrides,
    ) as svc:
        yield svc


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    with running_smtp() as server:
        yield server


def make_settings(tmp_path: Path, port: int, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ENVIRONMENT": "test",
        "VAR_DIR": tmp_path,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": port,
        "SMTP_SECURITY": "none",
        "SMTP_TIMEOUT_SECONDS": 5.0,
        "MAIL_FROM": "Reports <reports@example.com>",
        "MAIL_RATE_PER_SECOND": 0,
        "MAIL_BATCH_SIZE": 100,
    }
    values.update(overrides)
    settings = Settings(**values)
    mail_database(settings)
    return settings


def mail_database(settings: Settings) -> None:
    """The ledger is a table: create the schema (a no-op if migrated) and the jobs' owner."""
    engine = get_engine(settings.DATABASE_URL)
    metadata.create_all(engine)
    with engine.begin() as conn:
        if conn.execute(select(User.id).where(User.name == "mailer")).first() is None:
            conn.execute(insert(User).values(name="mailer"))


def ensure_job(settings: Settings, job_id: str, job_type: str = "email") -> None:
    """The job row a ledger belongs to (its marks go with it)."""
    engine = get_engine(settings.DATABASE_URL)
    with engine.begin() as conn:
        if conn.execute(select(ReportJob.id).where(ReportJob.id == job_id)).first() is None:
            owner = conn.execute(select(User.id).where(User.name == "mailer")).scalar_one()
            conn.execute(
                insert(ReportJob).values(
                    id=job_id, owner_id=owner, job_type=job_type, queue="notifications"
                )
            )


def write_marks(settings: Settings, job_id: str, marks: list[tuple[str, str, int]]) -> None:
    """Rows as a killed worker leaves them: (recipient key, status, attempt)."""
    with get_engine(settings.DATABASE_URL).begin() as conn:
        for key, status, attempt in marks:
            conn.execute(
                insert(MailDelivery).values(
                    job_id=job_id, recipient=key, status=status, attempt=attempt
                )
            )


def read_marks(settings: Settings, job_id: str) -> dict[str, tuple[str, int]]:
    table = MailDelivery.__table__
    with get_engine(settings.DATABASE_URL).connect() as conn:
        rows = conn.execute(
            select(table.c.recipient, table.c.status, table.c.attempt).where(
                table.c.job_id == job_id
            )
        ).all()
    return {row.recipient: (row.status, row.attempt) for row in rows}


def make_ctx(
    settings: Settings,
    job_type: str,
    params: dict[str, Any],
    *,
    attempt: int = 1,
    job_id: str = "job-1",
    progress: list[tuple[float, str]] | None = None,
    check_cancelled: Any = None,
) -> JobContext:
    seen = progress if progress is not None else []
    ensure_job(settings, job_id, job_type)
    return JobContext(
        job_id=job_id,
        job_type=job_type,
        params=params,
        owner_id=1,
        attempt=attempt,
        settings=settings,
        report_progress=lambda p, m: seen.append((p, m)),
        check_cancelled=check_cancelled or (lambda: None),
        scratch_dir=settings.VAR_DIR / "tmp",
    )


def bulk_params(count: int) -> dict[str, Any]:
    return {
        "subject": "Hello {{ name }}",
        "body": "Dear {{ name }},\nyour code is {{ code }}.\n",
        "html_body": "<p>Dear {{ name }}, your code is <b>{{ code }}</b>.</p>",
        "recipients": [
            {"email": f"user{i:04d}@example.com", "context": {"name": f"User {i}", "code": i}}
            for i in range(count)
        ],
    }


def text_part(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content()).replace("\r\n", "\n")


# --------------------------------------------------------------------------- bulk
def test_bulk_thousand_recipients_each_exactly_once_despite_transient_error(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    settings = make_settings(tmp_path, smtp_server.port)
    params = bulk_params(1000)
    victim = "user0437@example.com"
    smtp_server.recorder.fail_data_once.add(victim)
    progress: list[tuple[float, str]] = []

    with pytest.raises(TransientJobError, match="temporary SMTP error") as excinfo:
        run_bulk_email(make_ctx(settings, "bulk_email", params, progress=progress))
    assert "999 of 1000 sent" in str(excinfo.value)
    counts = smtp_server.recorder.count_by_recipient()
    assert len(counts) == 999 and set(counts.values()) == {1} and victim not in counts
    assert len(progress) >= 10  # one report per batch of 100, at least

    # The runner retries the job: only the deferred recipient is sent.
    output = run_bulk_email(make_ctx(settings, "bulk_email", params, attempt=2))
    counts = smtp_server.recorder.count_by_recipient()
    assert len(counts) == 1000 and set(counts.values()) == {1}
    assert len(smtp_server.recorder.messages) == 1000

    result = output.result
    assert result is not None
    assert (result["total"], result["sent"], result["failed"]) == (1000, 1000, 0)
    outcomes = {item["email"]: item for item in result["recipients"]}
    assert len(outcomes) == 1000 and {item["status"] for item in outcomes.values()} == {"sent"}
    assert outcomes[victim]["attempt"] == 2 and outcomes["user0001@example.com"]["attempt"] == 1

    # Each message is personal, addressed to its recipient alone, with a unique Message-ID.
    ids = set()
    for received in smtp_server.recorder.messages:
        msg = received.message
        (address,) = received.rcpt_tos
        number = int(address[4:8])
        assert msg["To"] == address and received.mail_from == "reports@example.com"
        assert msg["Subject"] == f"Hello User {number}"
        assert f"your code is {number}." in text_part(msg)
        html = msg.get_body(preferencelist=("html",))
        assert html is not None and f"<b>{number}</b>" in html.get_content()
        ids.add(msg["Message-ID"])
    assert len(ids) == 1000

    # A third run (e.g. the runner lost the completion and ran it again) sends nothing.
    again = run_bulk_email(make_ctx(settings, "bulk_email", params, attempt=3))
    assert again.result is not None and again.result["sent"] == 1000
    assert len(smtp_server.recorder.messages) == 1000


def test_bulk_cut_connection_after_accept_is_unknown_and_never_resent(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    settings = make_settings(tmp_path, smtp_server.port)
    params = bulk_params(30)
    smtp_server.recorder.drop_after_accept.add("user0010@example.com")

    output = run_bulk_email(make_ctx(settings, "bulk_email", params))
    result = output.result
    assert result is not None
    outcomes = {item["email"]: item for item in result["recipients"]}
    assert outcomes["user0010@example.com"]["status"] == "unknown"
    assert "not sent again" in outcomes["user0010@example.com"]["error"]
    assert (result["sent"], result["unknown"]) == (29, 1)
    # The pass reconnected and carried on; the server holds each message exactly once.
    counts = smtp_server.recorder.count_by_recipient()
    assert len(counts) == 30 and set(counts.values()) == {1}

    run_bulk_email(make_ctx(settings, "bulk_email", params, attempt=2))
    assert len(smtp_server.recorder.messages) == 30


def test_bulk_reconnects_when_the_server_caps_messages_per_connection(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    smtp_server.recorder.per_connection_limit = 7
    settings = make_settings(tmp_path, smtp_server.port)
    output = run_bulk_email(make_ctx(settings, "bulk_email", bulk_params(60)))
    assert output.result is not None and output.result["sent"] == 60  # in one attempt
    counts = smtp_server.recorder.count_by_recipient()
    assert len(counts) == 60 and set(counts.values()) == {1}
    assert len(smtp_server.recorder.sessions) >= 9  # far more drops than MAX_RECONNECTS


def test_bulk_stops_when_the_connection_keeps_dropping(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    smtp_server.recorder.per_connection_limit = -1  # hang up at every MAIL FROM
    settings = make_settings(tmp_path, smtp_server.port)
    with pytest.raises(TransientJobError, match="were not tried yet; 0 of 50 sent so far"):
        run_bulk_email(make_ctx(settings, "bulk_email", bulk_params(50)))
    assert smtp_server.recorder.messages == []


def test_bulk_worker_crash_mid_send_is_not_resent(tmp_path: Path, smtp_server: SmtpServer) -> None:
    """A ledger left by a killed worker: one sent, one cut off between DATA and its reply."""
    settings = make_settings(tmp_path, smtp_server.port)
    ensure_job(settings, "job-1", "bulk_email")
    write_marks(
        settings,
        "job-1",
        [
            ("", "held", 1),
            ("user0000@example.com", "sent", 1),
            ("user0001@example.com", "sending", 1),
        ],
    )

    output = run_bulk_email(make_ctx(settings, "bulk_email", bulk_params(5), attempt=2))
    assert output.result is not None
    statuses = [item["status"] for item in output.result["recipients"]]
    assert statuses == ["sent", "unknown", "sent", "sent", "sent"]
    assert sorted(smtp_server.recorder.count_by_recipient()) == [
        "user0002@example.com",
        "user0003@example.com",
        "user0004@example.com",
    ]
    # The dead attempt's lease was taken over, and its cut-off send is recorded as unknown.
    marks = read_marks(settings, "job-1")
    assert marks[""] == ("free", 2) and marks["user0001@example.com"] == ("unknown", 1)


def test_bulk_per_recipient_outcomes(tmp_path: Path, smtp_server: SmtpServer) -> None:
    settings = make_settings(tmp_path, smtp_server.port)
    smtp_server.recorder.reject_rcpt.add("gone@example.com")
    params = {
        "subject": "News",
        "body": "Hi {{ name }}",
        "recipients": [
            {"email": "a@example.com", "context": {"name": "A"}},
            {"email": "gone@example.com", "context": {"name": "G"}},
            {"email": "not-an-address", "context": {"name": "X"}},
            {"email": "A@Example.com", "context": {"name": "A again"}},
            {"email": "b@example.com", "context": {}},
        ],
    }
    output = run_bulk_email(make_ctx(settings, "bulk_email", params))
    assert output.result is not None
    by_status = [(item["email"], item["status"]) for item in output.result["recipients"]]
    assert by_status == [
        ("a@example.com", "sent"),
        ("gone@example.com", "failed"),
        ("not-an-address", "invalid"),
        ("A@example.com", "duplicate"),
        ("b@example.com", "failed"),  # {{ name }} undefined: not mailed as "Hi "
    ]
    failed = output.result["recipients"]
    assert failed[1]["code"] == 550 and "no such mailbox" in failed[1]["error"]
    assert "'name' is undefined" in failed[4]["error"]
    assert list(smtp_server.recorder.count_by_recipient()) == ["a@example.com"]


def test_bulk_last_attempt_reports_deferred_as_failed(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    settings = make_settings(tmp_path, smtp_server.port, JOB_MAX_RETRIES=1)
    smtp_server.recorder.fail_data_always.add("user0001@example.com")
    params = bulk_params(3)
    with pytest.raises(TransientJobError):
        run_bulk_email(make_ctx(settings, "bulk_email", params, attempt=1))
    output = run_bulk_email(make_ctx(settings, "bulk_email", params, attempt=2))
    assert output.result is not None
    item = output.result["recipients"][1]
    assert item["status"] == "failed" and item["code"] == 451
    assert item["error"].startswith("gave up after 2 attempts")
    assert output.result["sent"] == 2 and len(smtp_server.recorder.messages) == 2


def test_bulk_refused_sender_fails_the_job_with_the_setting_to_fix(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    smtp_server.recorder.reject_sender = True
    settings = make_settings(tmp_path, smtp_server.port)
    with pytest.raises(PermanentJobError, match="set MAIL_FROM"):
        run_bulk_email(make_ctx(settings, "bulk_email", bulk_params(3)))


def test_bulk_is_rate_limited(tmp_path: Path, smtp_server: SmtpServer) -> None:
    settings = make_settings(tmp_path, smtp_server.port, MAIL_RATE_PER_SECOND=50)
    started = time.monotonic()
    run_bulk_email(make_ctx(settings, "bulk_email", bulk_params(20)))
    # 20 messages at 50/s: the first leaves at once, the other 19 every 20 ms.
    assert time.monotonic() - started >= 19 / 50 - 0.02
    assert len(smtp_server.recorder.messages) == 20


def test_token_bucket_paces_without_bursts() -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    bucket = TokenBucket(10, clock=lambda: now[0], sleep=sleep)
    for _ in range(11):
        bucket.acquire()
    assert now[0] == pytest.approx(1.0)  # 11 sends at 10/s: 1 at once, then one per 0.1 s
    now[0] += 5.0  # idle: the bucket holds at most one token, so no burst follows
    bucket.acquire()
    bucket.acquire()
    assert now[0] == pytest.approx(6.1)
    unlimited = TokenBucket(0, clock=lambda: now[0], sleep=sleep)
    before = len(sleeps)
    for _ in range(100):
        unlimited.acquire()
    assert len(sleeps) == before


def test_bulk_cancel_stops_between_batches(tmp_path: Path, smtp_server: SmtpServer) -> None:
    settings = make_settings(tmp_path, smtp_server.port, MAIL_BATCH_SIZE=10)
    progress: list[tuple[float, str]] = []

    def cancelled_after_two_batches() -> None:
        if len(progress) >= 2:
            raise JobCancelled("cancelled")

    ctx = make_ctx(settings, "bulk_email", bulk_params(100), progress=progress)
    original = ctx.report_progress

    def report(percent: float, message: str) -> None:
        original(percent, message)
        cancelled_after_two_batches()

    ctx.report_progress = report
    with pytest.raises(JobCancelled):
        run_bulk_email(ctx)
    assert len(smtp_server.recorder.messages) == 20


# --------------------------------------------------------------------------- single e-mail
def test_single_email_with_html_and_attachment_is_sent_once(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    settings = make_settings(tmp_path, smtp_server.port)
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4\n% a finished report\n")
    params = {
        "to": "boss@example.com",
        "subject": "Monthly report for {{ month }}",
        "body": "Attached: the report for {{ month }}.",
        "html_body": "<p>Attached: the report for <em>{{ month }}</em>.</p>",
        "context": {"month": "May <2025>"},
        "attachments": [
            {"path": str(report), "filename": "may.pdf", "mime_type": "application/pdf"}
        ],
    }
    output = run_email(make_ctx(settings, "email", params))
    assert output.result is not None and output.result["status"] == "sent"
    assert output.result["accepted"] == ["boss@example.com"]
    (received,) = smtp_server.recorder.messages
    msg = received.message
    assert msg["Subject"] == "Monthly report for May <2025>"
    assert text_part(msg) == "Attached: the report for May <2025>.\n"
    html = msg.get_body(preferencelist=("html",))
    assert html is not None and "<em>May &lt;2025&gt;</em>" in html.get_content()
    (attachment,) = list(msg.iter_attachments())
    assert attachment.get_filename() == "may.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == report.read_bytes()
    assert msg["Auto-Submitted"] == "auto-generated"

    # A retried job (the runner crashed before recording success) does not send again.
    again = run_email(make_ctx(settings, "email", params, attempt=2))
    assert again.result is not None and again.result["already_sent_in_attempt"] == 1
    assert len(smtp_server.recorder.messages) == 1


def test_single_email_errors_are_classified(tmp_path: Path, smtp_server: SmtpServer) -> None:
    settings = make_settings(tmp_path, smtp_server.port)
    smtp_server.recorder.reject_rcpt.add("gone@example.com")
    smtp_server.recorder.fail_data_once.add("busy@example.com")
    base = {"subject": "s", "body": "b"}
    with pytest.raises(PermanentJobError, match=r"550 5\.1\.1 no such mailbox"):
        run_email(make_ctx(settings, "email", {**base, "to": "gone@example.com"}, job_id="j1"))
    with pytest.raises(TransientJobError, match="451"):
        run_email(make_ctx(settings, "email", {**base, "to": "busy@example.com"}, job_id="j2"))
    output = run_email(
        make_ctx(settings, "email", {**base, "to": "busy@example.com"}, job_id="j2", attempt=2)
    )
    assert output.result is not None and output.result["status"] == "sent"
    with pytest.raises(PermanentJobError, match="not an e-mail address"):
        run_email(make_ctx(settings, "email", {**base, "to": "nobody"}, job_id="j3"))
    with pytest.raises(PermanentJobError, match="no longer exists"):
        run_email(
            make_ctx(
                settings,
                "email",
                {
                    **base,
                    "to": "a@example.com",
                    "attachments": [{"path": str(tmp_path / "gone.pdf"), "filename": "gone.pdf"}],
                },
                job_id="j4",
            )
        )
    assert smtp_server.recorder.count_by_recipient() == Counter({"busy@example.com": 1})


def test_single_email_cut_off_mid_send_is_not_sent_again(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    settings = make_settings(tmp_path, smtp_server.port)
    ensure_job(settings, "job-1")
    write_marks(settings, "job-1", [("message", "sending", 1)])
    params = {"to": "a@example.com", "subject": "s", "body": "b"}
    with pytest.raises(PermanentJobError, match="may have been delivered, so it is not sent"):
        run_email(make_ctx(settings, "email", params, attempt=2))
    assert smtp_server.recorder.messages == []


def test_two_workers_cannot_send_the_same_job_at_once(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    settings = make_settings(tmp_path, smtp_server.port)
    ensure_job(settings, "job-1", "bulk_email")
    with (
        Ledger.open(settings, "job-1", attempt=1),
        pytest.raises(TransientJobError, match="already being sent by another worker"),
    ):
        run_bulk_email(make_ctx(settings, "bulk_email", bulk_params(3)))
    assert smtp_server.recorder.messages == []


def test_report_ready_notice_has_the_link_and_is_sent_once(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    settings = make_settings(tmp_path, smtp_server.port)
    url = "http://127.0.0.1:8000/reports/jobs/abc123/download"
    ensure_job(settings, "abc123", "pdf")
    for _ in range(2):
        notify_report_ready(
            settings=settings,
            to="owner@example.com",
            job_id="abc123",
            download_url=url,
            title="Sales <Q3>",
        )
    (received,) = smtp_server.recorder.messages
    msg = received.message
    assert msg["Subject"] == 'Your report "Sales <Q3>" is ready'
    assert url in text_part(msg)
    html = msg.get_body(preferencelist=("html",))
    assert html is not None and f'href="{url}"' in html.get_content()
    assert "Sales &lt;Q3&gt;" in html.get_content()


# --------------------------------------------------------------------------- server problems
def test_missing_smtp_server_fails_fast_with_what_to_fix(tmp_path: Path) -> None:
    closed = make_settings(tmp_path, free_port())
    started = time.monotonic()
    with pytest.raises(TransientJobError) as excinfo:
        run_email(make_ctx(closed, "email", {"to": "a@example.com", "subject": "s", "body": "b"}))
    message = str(excinfo.value)
    assert f"cannot reach SMTP server 127.0.0.1:{closed.SMTP_PORT}" in message
    assert "SMTP_HOST/SMTP_PORT" in message
    assert time.monotonic() - started < 3

    with pytest.raises(PermanentJobError, match="no SMTP server is configured: set SMTP_HOST"):
        run_bulk_email(
            make_ctx(make_settings(tmp_path, 25, SMTP_HOST=""), "bulk_email", bulk_params(2))
        )
    with pytest.raises(PermanentJobError, match="unknown host"):
        smtp.connect(make_settings(tmp_path, 25, SMTP_HOST="no-such-host.invalid"))


def test_silent_server_times_out_instead_of_hanging(tmp_path: Path) -> None:
    """A port that accepts but never greets (e.g. TLS expected) ends in SMTP_TIMEOUT_SECONDS."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        settings = make_settings(tmp_path, listener.getsockname()[1], SMTP_TIMEOUT_SECONDS=0.5)
        started = time.monotonic()
        with pytest.raises(TransientJobError, match="SMTP_SECURITY=tls"):
            smtp.connect(settings)
        assert time.monotonic() - started < 3


# --------------------------------------------------------------------------- TLS and auth
@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: cannot make a test certificate")
    directory = tmp_path_factory.mktemp("cert")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def _authenticator(
    server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"mailer",
        b"s3cret",
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_tls_and_login_from_settings(
    tmp_path: Path, certificate: tuple[Path, Path], security: str
) -> None:
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    recorder = Recorder()
    port = free_port()
    tls_kwargs: dict[str, Any] = (
        {"tls_context": server_ctx, "require_starttls": True}
        if security == "starttls"
        # aiosmtpd only counts STARTTLS as encryption; implicit TLS is encrypted all along.
        else {"ssl_context": server_ctx, "auth_require_tls": False}
    )
    controller = Controller(
        recorder,
        hostname="127.0.0.1",
        port=port,
        auth_required=True,
        authenticator=_authenticator,
        **tls_kwargs,
    )
    controller.start()
    try:
        settings = make_settings(
            tmp_path, port, SMTP_SECURITY=security, SMTP_USER="mailer", SMTP_PASSWORD="s3cret"
        )
        client = smtp.connect(settings, ssl_context=client_ctx)
        try:
            smtp.deliver(
                client,
                b"Subject: hi\r\n\r\nover TLS\r\n",
                sender="reports@example.com",
                recipients=["a@example.com"],
            )
        finally:
            smtp.quit_quietly(client)
        assert recorder.count_by_recipient() == Counter({"a@example.com": 1})

        wrong = make_settings(
            tmp_path, port, SMTP_SECURITY=security, SMTP_USER="mailer", SMTP_PASSWORD="wrong"
        )
        with pytest.raises(PermanentJobError, match="check SMTP_USER/SMTP_PASSWORD"):
            smtp.connect(wrong, ssl_context=client_ctx)
        untrusted = make_settings(tmp_path, port, SMTP_SECURITY=security)
        with pytest.raises(PermanentJobError, match="certificate"):
            smtp.connect(untrusted)  # the system trust store does not know our test CA
    finally:
        controller.stop()


def test_starttls_required_but_not_offered(tmp_path: Path, smtp_server: SmtpServer) -> None:
    settings = make_settings(tmp_path, smtp_server.port, SMTP_SECURITY="starttls")
    with pytest.raises(PermanentJobError, match="does not offer STARTTLS: set SMTP_SECURITY"):
        smtp.connect(settings)


# --------------------------------------------------------------------------- templates
def test_templates_escape_html_only_and_refuse_unsafe_or_unknown() -> None:
    mail = load_template("report_ready").render(
        {"title": "<script>x</script>", "download_url": "http://h/d?a=1&b=2", "job_id": "j"}
    )
    assert "<script>x</script>" in mail.text
    assert mail.html is not None and "&lt;script&gt;" in mail.html and "<script>" not in mail.html
    assert "a=1&amp;b=2" in mail.html

    with pytest.raises(TemplateProblem, match="available: report_ready"):
        load_template("../../etc/passwd")
    with pytest.raises(TemplateProblem, match="does not compile"):
        compile_template(subject="s", body="{% if %}")
    with pytest.raises(TemplateProblem, match="exactly one"):
        compile_template(subject="s", template="report_ready", body="b")
    sneaky = compile_template(subject="s", body="{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TemplateProblem):
        sneaky.render({})
    header = compile_template(subject="Hi\r\nBcc: all@example.com", body="b").render({})
    assert header.subject == "Hi Bcc: all@example.com"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("A.b+tag@Example.COM", "A.b+tag@example.com"), (" x@bücher.de ", "x@xn--bcher-kva.de")],
)
def test_address_normalisation(raw: str, expected: str) -> None:
    assert normalise_address(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "plain",
        "a@b",
        "a@@b.com",
        "a b@c.com",
        "a@c.com\r\nBcc: x@y.com",
        "<a@b.com>",
        "a@-b.com",
        "a..b@c.com",
    ],
)
def test_bad_addresses_are_refused(raw: str) -> None:
    with pytest.raises(ValueError):
        normalise_address(raw)


# --------------------------------------------------------------------------- HTTP API
@pytest.fixture(scope="module")
def module_smtp() -> Iterator[SmtpServer]:
    with running_smtp() as server:
        yield server


@pytest.fixture(scope="module", params=DATABASES)
def service(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    module_smtp: SmtpServer,
) -> Iterator[Service]:
    """The conftest service, its workers pointed at this module's SMTP server."""
    with running_mail_service(
        request.param,
        tmp_path_factory.mktemp(f"mail-{request.param}"),
        module_smtp,
        MAIL_ALLOWED_DOMAINS="example.com, Corp.Example",
    ) as svc:
        yield svc


def delivered_to(recorder: Recorder, prefix: str) -> Counter[str]:
    return Counter(
        {
            address: n
            for address, n in recorder.count_by_recipient().items()
            if address.startswith(prefix)
        }
    )


def test_bulk_over_http_retries_only_the_deferred_recipient(
    service: Service, auth: dict[str, str], module_smtp: SmtpServer
) -> None:
    prefix = f"{service.db_kind}-bulk"
    recipients = [
        {"email": f"{prefix}{i:03d}@example.com", "context": {"n": i}} for i in range(200)
    ]
    module_smtp.recorder.fail_data_once.add(f"{prefix}120@example.com")
    response = service.client.post(
        "/notifications/bulk",
        headers=auth,
        json={
            "subject": "Statement {{ n }}",
            "body": "Your number is {{ n }}.",
            "recipients": recipients,
        },
    )
    assert response.status_code == 202, response.text
    assert response.json()["queue"] == "notifications"
    job = service.wait(response.json()["job_id"], auth)
    assert job["status"] == "completed", job
    assert job["attempts"] == 2  # the runner retried after the transient 451
    assert job["result"]["sent"] == 200 and len(job["result"]["recipients"]) == 200
    counts = delivered_to(module_smtp.recorder, prefix)
    assert len(counts) == 200 and set(counts.values()) == {1}


def test_email_with_a_finished_job_attached(
    service: Service, auth: dict[str, str], other_auth: dict[str, str], module_smtp: SmtpServer
) -> None:
    report = service.client.post("/reports/dummy", headers=auth).json()
    finished = service.wait(report["job_id"], auth)
    assert finished["status"] == "completed"
    to = f"{service.db_kind}-boss@example.com"
    response = service.client.post(
        "/notifications/email",
        headers=auth,
        json={
            "to": to,
            "template": "report_ready",
            "context": {"title": "Dummy", "download_url": "http://x/d", "job_id": report["job_id"]},
            "attach_job_id": report["job_id"],
        },
    )
    assert response.status_code == 202, response.text
    job = service.wait(response.json()["job_id"], auth)
    assert job["status"] == "completed", job
    assert job["result"]["attachments"] == ["dummy-report.json"]
    (received,) = [m for m in module_smtp.recorder.messages if m.rcpt_tos == [to]]
    (attachment,) = list(received.message.iter_attachments())
    assert attachment.get_filename() == "dummy-report.json"
    assert received.message["Subject"] == 'Your report "Dummy" is ready'

    # Someone else's job cannot be attached; an unfinished one cannot either.
    stolen = service.client.post(
        "/notifications/email",
        headers=other_auth,
        json={"to": to, "subject": "s", "body": "b", "attach_job_id": report["job_id"]},
    )
    assert stolen.status_code == 422 and "attach_job_id" in stolen.json()["detail"]
    slow = service.client.post("/reports/dummy", headers=auth, json={"delay_seconds": 5}).json()
    early = service.client.post(
        "/notifications/email",
        headers=auth,
        json={"to": to, "subject": "s", "body": "b", "attach_job_id": slow["job_id"]},
    )
    assert early.status_code == 409 and "no file to attach" in early.json()["detail"]
    service.client.post(f"/reports/jobs/{slow['job_id']}/cancel", headers=auth)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"to": "nobody", "subject": "s", "body": "b"}, "not an e-mail address"),
        ({"to": "a@example.com", "body": "b"}, "'subject' is required"),
        ({"to": "a@example.com", "template": "nope"}, "unknown template 'nope'"),
        ({"to": "a@example.com", "subject": "s", "body": "{% if %}"}, "does not compile"),
        ({"to": "a@example.com", "subject": "s"}, "exactly one of"),
        ({"to": "a@example.com", "subject": "s", "body": "b", "bcc": "x"}, "unknown field"),
    ],
)
def test_email_request_validation(
    service: Service, auth: dict[str, str], body: dict[str, Any], message: str
) -> None:
    response = service.client.post("/notifications/email", headers=auth, json=body)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]


def test_bulk_request_validation(service: Service, auth: dict[str, str]) -> None:
    def post(recipients: list[dict[str, Any]]) -> Any:
        return service.client.post(
            "/notifications/bulk",
            headers=auth,
            json={"subject": "s", "body": "b", "recipients": recipients},
        )

    bad = post([{"email": "broken@"}, {"email": "x y@z.com"}])
    assert bad.status_code == 422  # nothing left to send
    detail = bad.json()["detail"]
    assert "recipients[0]" in detail and "recipients[1]" in detail
    assert post([]).status_code == 422
    too_many = post([{"email": f"u{i}@example.com"} for i in range(10_001)])
    assert too_many.status_code == 422 and "10000" in too_many.json()["detail"]


# --------------------------------------------------------------------------- recipient policy
def _mail(service: Service, headers: dict[str, str], to: str | list[str]) -> Any:
    return service.client.post(
        "/notifications/email", headers=headers, json={"to": to, "subject": "s", "body": "b"}
    )


def test_single_email_recipients_are_restricted(service: Service, auth: dict[str, str]) -> None:
    outsider = f"{service.db_kind}-x@other.org"
    refused = _mail(service, auth, ["ok@example.com", outsider])
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert outsider in detail and "MAIL_ALLOWED_DOMAINS" in detail
    assert "ok@example.com" not in detail
    assert _mail(service, auth, "ok@example.com").status_code == 202
    assert _mail(service, auth, "boss@corp.example").status_code == 202  # listed, any case
    assert _mail(service, auth, "x@sub.example.com").status_code == 422  # exact domains only

    own = f"{service.db_kind}-me@elsewhere.org"
    mine = service.headers(service.token(email=own))
    assert _mail(service, mine, own).status_code == 202  # one's own address, any domain
    assert _mail(service, mine, outsider).status_code == 422
    admin = service.headers(service.token(admin=True))
    assert _mail(service, admin, outsider).status_code == 202


def test_only_own_address_when_no_domain_is_allowed(service: Service) -> None:
    own = f"{service.db_kind}-solo@example.com"
    headers = service.headers(service.token(email=own))
    set_settings(service.settings.model_copy(update={"MAIL_ALLOWED_DOMAINS": ""}))
    try:
        refused = _mail(service, headers, "colleague@example.com")
        assert refused.status_code == 422
        assert "only mail your own address" in refused.json()["detail"]
        assert own in refused.json()["detail"]
        assert (
            _mail(service, headers, own.upper().replace("@EXAMPLE.COM", "@example.com")).status_code
            == 202
        )
    finally:
        set_settings(service.settings)


def test_bulk_skips_refused_and_malformed_recipients_with_the_reason(
    service: Service, auth: dict[str, str], module_smtp: SmtpServer
) -> None:
    prefix = f"{service.db_kind}-skip"
    recipients = [
        {"email": f"{prefix}-a@example.com"},
        {"email": f"{prefix}-evil@other.org"},
        {"email": "broken@"},
        {"email": f"{prefix}-b@corp.example"},
    ]
    response = service.client.post(
        "/notifications/bulk",
        headers=auth,
        json={"subject": "s", "body": "b", "recipients": recipients},
    )
    assert response.status_code == 202, response.text
    job = service.wait(response.json()["job_id"], auth)
    assert job["status"] == "completed", job
    result = job["result"]
    assert result["sent"] == 2 and result["skipped"] == 2 and result["total"] == 4
    by_email = {r["email"]: r for r in result["recipients"]}
    assert by_email[f"{prefix}-evil@other.org"]["status"] == "skipped"
    assert "MAIL_ALLOWED_DOMAINS" in by_email[f"{prefix}-evil@other.org"]["error"]
    assert by_email["broken@"]["status"] == "skipped"
    assert "recipients[2]" in by_email["broken@"]["error"]
    delivered = delivered_to(module_smtp.recorder, prefix)
    assert set(delivered) == {f"{prefix}-a@example.com", f"{prefix}-b@corp.example"}

    nobody = service.client.post(
        "/notifications/bulk",
        headers=auth,
        json={"subject": "s", "body": "b", "recipients": [{"email": "x@other.org"}]},
    )
    assert nobody.status_code == 422 and "no recipient can be mailed" in nobody.json()["detail"]


def test_mail_without_an_smtp_server_is_refused_at_submit(
    service: Service, auth: dict[str, str]
) -> None:
    set_settings(service.settings.model_copy(update={"SMTP_HOST": ""}))
    try:
        single = _mail(service, auth, "ok@example.com")
        bulk = service.client.post(
            "/notifications/bulk",
            headers=auth,
            json={"subject": "s", "body": "b", "recipients": [{"email": "ok@example.com"}]},
        )
    finally:
        set_settings(service.settings)
    for response in (single, bulk):
        assert response.status_code == 422, response.text
        detail = response.json()["detail"]
        assert "no SMTP server is configured" in detail
        assert all(name in detail for name in ("SMTP_HOST", "SMTP_PORT", "MAIL_FROM"))


def test_a_template_variable_missing_from_the_context_is_refused_at_submit(
    service: Service, auth: dict[str, str], module_smtp: SmtpServer
) -> None:
    single = service.client.post(
        "/notifications/email",
        headers=auth,
        json={
            "to": "ok@example.com",
            "subject": "Invoice {{ number }}",
            "body": "Dear {{ name }}, {{ note | default('') }}",
            "context": {"name": "Ada"},
        },
    )
    assert single.status_code == 422, single.text
    detail = single.json()["detail"]
    assert "'number'" in detail and "ok@example.com" in detail and "'name'" not in detail
    builtin = service.client.post(
        "/notifications/email",
        headers=auth,
        json={"to": "ok@example.com", "template": "report_ready", "context": {"title": "t"}},
    )
    assert builtin.status_code == 422
    assert "'download_url', 'job_id'" in builtin.json()["detail"]

    prefix = f"{service.db_kind}-vars"
    recipients = [
        {"email": f"{prefix}-a@example.com", "context": {"name": "Ada"}},
        {"email": f"{prefix}-b@example.com"},
    ]
    bulk = service.client.post(
        "/notifications/bulk",
        headers=auth,
        json={"subject": "Hi {{ email }}", "body": "Dear {{ name }}", "recipients": recipients},
    )
    assert bulk.status_code == 202, bulk.text
    job = service.wait(bulk.json()["job_id"], auth)
    assert job["status"] == "completed", job
    by_email = {r["email"]: r for r in job["result"]["recipients"]}
    skipped = by_email[f"{prefix}-b@example.com"]
    assert skipped["status"] == "skipped" and "'name'" in skipped["error"]
    assert f"{prefix}-b@example.com" in skipped["error"]
    assert set(delivered_to(module_smtp.recorder, prefix)) == {f"{prefix}-a@example.com"}


def test_daily_recipient_cap_answers_429_with_retry_after(service: Service) -> None:
    headers = service.headers(service.token())
    other = service.headers(service.token())
    set_settings(service.settings.model_copy(update={"MAIL_RECIPIENTS_PER_DAY": 3}))
    try:
        assert _mail(service, headers, ["a@example.com", "b@example.com"]).status_code == 202
        over = service.client.post(
            "/notifications/bulk",
            headers=headers,
            json={
                "subject": "s",
                "body": "b",
                # the refused one does not count: 2 + 2 > 3
                "recipients": [
                    {"email": "c@example.com"},
                    {"email": "d@example.com"},
                    {"email": "e@other.org"},
                ],
            },
        )
        assert over.status_code == 429, over.text
        assert "MAIL_RECIPIENTS_PER_DAY" in over.json()["detail"]
        assert "at most 3 recipients" in over.json()["detail"]
        assert 0 < int(over.headers["retry-after"]) <= 86_401
        assert _mail(service, headers, "c@example.com").status_code == 202  # exactly 3
        assert _mail(service, headers, "d@example.com").status_code == 429
        assert _mail(service, other, "d@example.com").status_code == 202  # per user
    finally:
        set_settings(service.settings)
