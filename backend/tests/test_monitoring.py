"""Monitoring: health checks against real things (a private Redis, a database, the disk),
system gauges, the daily statistics report (numbers, storage, mail), and the health routes.
"""

from __future__ import annotations

import statistics
import time
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, func, select

from app.core import metrics_multiprocess
from app.core.config import Settings, get_settings
from app.db.session import session_scope
from app.jobs.models import ReportJob
from app.jobs.states import JobStatus
from app.monitoring import daily_stats, health, system
from app.monitoring.models import DailyStats
from app.users.models import User
from tests.conftest import Service
from tests.infra import RedisServer
from tests.server import free_port
from tests.test_metrics import sample, scrape

# -- health checks ---------------------------------------------------------------------------


def test_database_check_names_the_failure_within_its_timeout(tmp_path: Path) -> None:
    good = health.check_database(engine=create_engine(f"sqlite:///{tmp_path / 'h.db'}"))
    assert good.ok and good.detail == "ok"
    dead = create_engine(
        f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none",
        connect_args={"connect_timeout": 5},
    )
    started = time.monotonic()
    bad = health.check_database(engine=dead, timeout=1.0)
    assert time.monotonic() - started < 3
    assert not bad.ok and bad.name == "database"
    assert "OperationalError" in bad.detail or "no answer" in bad.detail


def test_broker_and_result_backend_checks_follow_redis(redis_server: RedisServer) -> None:
    assert health.check_broker(url=redis_server.url(0)).ok
    assert health.check_result_backend(url=redis_server.url(1)).ok
    assert health.check_broker(url="").detail == "not configured"
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    started = time.monotonic()
    down = health.check_broker(url=nobody, timeout=1.0)
    backend = health.check_result_backend(url=nobody, timeout=1.0)
    assert time.monotonic() - started < 4
    assert not down.ok and "ConnectionError" in down.detail, down
    assert not backend.ok and backend.name == "result_backend"


class _Inspect:
    def __init__(self, replies: dict[str, Any] | None, delay: float = 0.0) -> None:
        self.replies, self.delay = replies, delay

    def active_queues(self) -> dict[str, Any] | None:
        time.sleep(self.delay)
        return self.replies


class _FakeCelery:
    """Just what `check_workers` uses of a Celery app: control.inspect(timeout).active_queues."""

    def __init__(self, replies: dict[str, Any] | None, delay: float = 0.0) -> None:
        self.control = self
        self._inspect = _Inspect(replies, delay)

    def inspect(self, timeout: float) -> _Inspect:
        return self._inspect


def test_workers_check_reports_each_queue() -> None:
    app = _FakeCelery(
        {
            "reports-a@h": [{"name": "reports"}],
            "reports-b@h": [{"name": "reports"}, {"name": "celery"}],
        }
    )
    results = {
        r.name: r
        for r in health.check_workers(
            celery_app=app, queues=["reports", "documents", "celery"], timeout=0.5
        )
    }
    assert results["workers:reports"].ok
    assert results["workers:reports"].data["workers"] == ["reports-a@h", "reports-b@h"]
    assert results["workers:celery"].ok
    assert not results["workers:documents"].ok
    assert "no worker answered for queue 'documents'" in results["workers:documents"].detail
    none = health.check_workers(celery_app=_FakeCelery(None), queues=["reports"], timeout=0.5)
    assert [r.ok for r in none] == [False]
    started = time.monotonic()
    hung = health.check_workers(
        celery_app=_FakeCelery({}, delay=30), queues=["reports"], timeout=0.2
    )
    assert time.monotonic() - started < 5 and not hung[0].ok


def test_disk_check_threshold(tmp_path: Path) -> None:
    assert health.check_disk(path=tmp_path / "not-yet" / "created", min_free_bytes=1).ok
    low = health.check_disk(path=tmp_path, min_free_bytes=1 << 60)
    assert not low.ok and "free under" in low.detail and low.data["free_bytes"] > 0
    assert not health.check_disk(path=tmp_path, min_free_bytes=0, min_free_percent=101).ok


def test_run_health_checks_sets_gauges(tmp_path: Path, redis_server: RedisServer) -> None:
    settings = Settings(  # type: ignore[call-arg]
        ENVIRONMENT="test",
        VAR_DIR=tmp_path,
        _env_file=None,
        CELERY_BROKER_URL=redis_server.url(0),
        CELERY_RESULT_BACKEND=redis_server.url(1),
    )
    report = health.run_health_checks(
        settings=settings,
        celery_app=_FakeCelery({"w@h": [{"name": "reports"}]}),
        queues=["reports", "documents"],
        timeout=0.5,
        min_free_bytes=1,
    )
    assert report.failing == ["workers:documents"]
    as_dict = report.as_dict()
    assert as_dict["status"] == "unhealthy" and as_dict["checks"]["database"]["ok"]
    text = scrape()
    assert sample(text, "report_health_check_up", check="database") == 1
    assert sample(text, "report_health_check_up", check="workers:documents") == 0
    assert sample(text, "report_health_check_up", check="broker") == 1


def test_system_metrics_gauges(tmp_path: Path) -> None:
    result = system.collect_system_metrics(paths=[tmp_path], cpu_interval=0.05)
    assert 0 <= result["cpu_percent"] <= 100
    assert result["memory"]["total"] > result["memory"]["available"] > 0
    text = scrape()
    assert sample(text, "system_memory_bytes", kind="total") == result["memory"]["total"]
    assert sample(text, "system_disk_bytes", path=str(tmp_path), kind="total") > 0
    assert "system_cpu_percent" in text


# -- daily statistics ------------------------------------------------------------------------

DAY = date(2031, 3, 14)


def _job(
    owner: int,
    job_type: str,
    status: str,
    *,
    hour: int,
    seconds: float | None = None,
    error: str | None = None,
    attempts: int = 1,
    day: date = DAY,
) -> ReportJob:
    created = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    started = created + timedelta(seconds=2)
    return ReportJob(
        owner_id=owner,
        job_type=job_type,
        queue="reports",
        status=status,
        params={},
        attempts=attempts,
        max_attempts=4,
        error=error,
        history=[],
        created_at=created,
        queued_at=created,
        started_at=started if attempts else None,
        finished_at=started + timedelta(seconds=seconds) if seconds is not None else None,
    )


def _seed(session: Any) -> dict[str, list[float]]:
    owner = User(name=f"stats-{time.monotonic_ns()}")
    session.add(owner)
    session.flush()
    pdf = [1.0, 2.0, 3.0, 4.0, 10.0]
    dummy = [0.5, 0.25]
    rows = [_job(owner.id, "pdf", "completed", hour=1 + i, seconds=s) for i, s in enumerate(pdf)]
    rows += [_job(owner.id, "dummy", "completed", hour=9, seconds=s, attempts=2) for s in dummy]
    rows += [
        _job(
            owner.id,
            "dummy",
            "failed",
            hour=10,
            seconds=1,
            error="gave up after 4 attempts: simulated transient failure 4 of 5",
            attempts=4,
        ),
        _job(
            owner.id,
            "dummy",
            "failed",
            hour=11,
            seconds=1,
            error="gave up after 4 attempts: simulated transient failure 4 of 5",
            attempts=4,
        ),
        _job(
            owner.id,
            "pdf",
            "failed",
            hour=12,
            seconds=1,
            error="internal error: KeyError: 'x' in 0e3b1f0c-1111-2222-3333-444455556666",
        ),
        _job(
            owner.id,
            "pdf",
            "failed",
            hour=13,
            seconds=1,
            error="internal error: KeyError: 'x' in 9f8e7d6c-aaaa-bbbb-cccc-ddddeeeeffff",
        ),
        _job(owner.id, "excel", "cancelled", hour=14, seconds=3),
        _job(owner.id, "excel", "queued", hour=23, attempts=0),
        # Other days are not counted.
        _job(owner.id, "pdf", "completed", hour=23, seconds=99, day=DAY - timedelta(days=1)),
        _job(
            owner.id,
            "pdf",
            "failed",
            hour=0,
            seconds=99,
            day=DAY + timedelta(days=1),
            error="tomorrow",
        ),
    ]
    session.add_all(rows)
    return {"pdf": pdf, "dummy": dummy}


def _quantile(values: list[float], q: int) -> float:
    """Independent reference: statistics' inclusive method is linear interpolation."""
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def test_daily_stats_numbers(database_url: str) -> None:
    with session_scope() as session:
        durations = _seed(session)
    with session_scope() as session:
        stats = daily_stats.compute_daily_stats(session=session, day=DAY)
    assert stats["total"] == 13
    assert stats["by_status"] == {"cancelled": 1, "completed": 7, "failed": 4, "queued": 1}
    assert stats["by_type"]["pdf"]["by_status"] == {"completed": 5, "failed": 2}
    assert stats["by_type"]["dummy"]["by_status"] == {"completed": 2, "failed": 2}
    assert stats["by_type"]["excel"]["total"] == 2
    pdf = stats["by_type"]["pdf"]["duration_seconds"]
    assert pdf["count"] == 5
    assert pdf["p50"] == pytest.approx(_quantile(durations["pdf"], 50))
    assert pdf["p95"] == pytest.approx(_quantile(durations["pdf"], 95))
    everything = durations["pdf"] + durations["dummy"]
    assert stats["duration_seconds"]["p95"] == pytest.approx(_quantile(everything, 95))
    assert stats["duration_seconds"]["max"] == 10.0
    assert stats["by_type"]["excel"]["duration_seconds"]["p50"] is None
    assert stats["retries"] == {"retried_jobs": 4, "extra_attempts": 2 * 1 + 2 * 3}
    failures = stats["failures"]
    assert [(f["count"], f["job_types"]) for f in failures] == [
        (2, {"dummy": 2}),
        (2, {"pdf": 2}),
    ]
    assert failures[1]["error"] == "internal error: KeyError: 'x' in <id>"
    assert "tomorrow" not in str(stats)


def test_daily_stats_upsert_and_mail_once(database_url: str) -> None:
    with session_scope() as session:
        _seed(session)
    sent: list[tuple[list[str], str, str]] = []
    settings = get_settings().model_copy(update={"ADMIN_EMAILS": ["ops@example.com"]})

    def send(to: list[str], subject: str, text: str) -> None:
        sent.append((to, subject, text))

    first = daily_stats.run_daily_report(settings=settings, day=DAY, send=send)
    assert first["mailed_to"] == ["ops@example.com"]
    again = daily_stats.run_daily_report(settings=settings, day=DAY, send=send)
    assert again["mailed_to"] == [] and len(sent) == 1  # recomputed, not mailed twice
    [(_to, subject, text)] = sent
    assert subject == f"Report jobs {DAY}: 13 jobs, 7 completed, 4 failed"
    assert "pdf: 7 (completed=5, failed=2)" in text and "Top failures:" in text
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(DailyStats)) == 1
        row = session.get(DailyStats, DAY)
        assert row is not None and row.mailed_at is not None
        assert (row.total_jobs, row.completed, row.failed, row.cancelled) == (13, 7, 4, 1)
        assert row.stats["by_type"]["pdf"]["total"] == 7

    def broken(to: list[str], subject: str, text: str) -> None:
        raise ConnectionRefusedError("smtp down")

    forced = daily_stats.run_daily_report(settings=settings, day=DAY, send=broken, force_mail=True)
    assert forced["mail_error"] == "ConnectionRefusedError: smtp down"
    assert forced["stats"]["total"] == 13
    nobody = daily_stats.run_daily_report(
        settings=settings.model_copy(update={"ADMIN_EMAILS": []}),
        day=DAY - timedelta(days=3),
        send=send,
    )
    assert nobody["stats"]["total"] == 0 and len(sent) == 1


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


def test_daily_report_mailed_through_smtp(database_url: str) -> None:
    from aiosmtpd.controller import Controller

    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with session_scope() as session:
            _seed(session)
        settings = get_settings().model_copy(
            update={
                "SMTP_HOST": "127.0.0.1",
                "SMTP_PORT": port,
                "MAIL_FROM": "reports@example.com",
                "ADMIN_EMAILS": ["a@example.com", "b@example.com"],
            }
        )
        result = daily_stats.run_daily_report(settings=settings, day=DAY)
    finally:
        controller.stop()
    assert result["mailed_to"] == ["a@example.com", "b@example.com"], result
    [(rcpts, raw)] = inbox.messages
    assert rcpts == ["a@example.com", "b@example.com"]
    message = message_from_bytes(raw)
    assert message["Subject"].startswith(f"Report jobs {DAY}: 13 jobs")
    payload = message.get_payload(decode=True)
    assert isinstance(payload, bytes) and b"Durations (completed): p50" in payload


# -- routes ------------------------------------------------------------------------------------


def test_health_routes_without_auth(service: Service) -> None:
    assert service.client.get("/health/live").json() == {"status": "ok"}
    response = service.client.get("/health/ready")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["backend"] == "local"
    assert body["checks"]["database"]["ok"] and body["checks"]["local"]["ok"]


def test_daily_report_matches_jobs_that_ran(service: Service, auth: dict[str, str]) -> None:
    ids = []
    for body in ({}, {}, {"fail_times": 1}, {"fail_times": 5}):
        response = service.client.post("/reports/dummy", json=body, headers=auth)
        assert response.status_code == 202
        ids.append(response.json()["job_id"])
    finals = [service.wait(job_id, auth) for job_id in ids]
    assert [job["status"] for job in finals] == ["completed"] * 3 + ["failed"]
    today = datetime.fromisoformat(finals[0]["created_at"]).astimezone(UTC).date()
    report = daily_stats.run_daily_report(settings=service.settings, day=today)
    stats = report["stats"]
    with session_scope() as session:
        rows = session.execute(
            select(
                ReportJob.job_type,
                ReportJob.status,
                ReportJob.started_at,
                ReportJob.finished_at,
                ReportJob.error,
            )
        ).all()
    expected: dict[str, int] = {}
    for row in rows:
        expected[row.status] = expected.get(row.status, 0) + 1
    assert stats["by_status"] == expected
    assert stats["total"] == len(rows)
    completed = sorted(
        (r.finished_at - r.started_at).total_seconds()
        for r in rows
        if r.status == JobStatus.COMPLETED
    )
    dummy = stats["by_type"]["dummy"]["duration_seconds"]
    assert dummy["count"] == len(completed)
    if len(completed) >= 2:
        assert dummy["p50"] == pytest.approx(_quantile(completed, 50))
        assert dummy["p95"] == pytest.approx(_quantile(completed, 95))
    [failure] = [f for f in stats["failures"] if "gave up" in f["error"]]
    assert failure["count"] == sum(1 for r in rows if r.error and "gave up" in r.error)
    with session_scope() as session:
        assert session.get(DailyStats, today) is not None
    # The service made this process an instance.
    assert metrics_multiprocess.multiprocess_dir() is not None
