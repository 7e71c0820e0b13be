"""The scheduler (app/schedules): duties and schedules fired once per due time, by a clock the
test gives (no sleeping through real minutes), in every mode.

- timing: 08:00 Europe/Paris is 07:00 UTC in winter and 06:00 UTC in summer;
- catch-up: downtime across three due times gives one run, keyed by the latest;
- embedded mode: the relay thread's tick runs the cleanup duty, which deletes an old job and
  its stored file;
- two real processes ticking the same schedule at the same instants (PostgreSQL) create
  exactly one job per due time.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from app.core.config import get_settings, set_settings
from app.db.session import session_scope
from app.jobs.models import ReportJob
from app.schedules import duties, timing
from app.schedules.models import DUTY, REPORT, Schedule, ScheduleFiring
from app.schedules.tick import tick
from app.storage import get_store
from app.users.models import User
from app.users.store import create_token
from tests.conftest import fresh_database, make_settings, running_service

BACKEND = Path(__file__).resolve().parents[1]
WINTER = datetime(2026, 3, 27, 12, 0, tzinfo=UTC)  # Paris changes to summer time on 29 March


def test_cron_in_paris_is_right_in_utc_across_the_change_to_summer_time() -> None:
    times = []
    after = WINTER
    for _ in range(3):
        after = timing.next_after(
            cron="0 8 * * *", interval_seconds=None, timezone="Europe/Paris", after=after
        )
        times.append(after)
    assert times == [
        datetime(2026, 3, 28, 7, 0, tzinfo=UTC),  # 08:00 CET
        datetime(2026, 3, 29, 6, 0, tzinfo=UTC),  # 08:00 CEST
        datetime(2026, 3, 30, 6, 0, tzinfo=UTC),
    ]
    autumn = timing.next_after(
        cron="0 8 * * *",
        interval_seconds=None,
        timezone="Europe/Paris",
        after=datetime(2026, 10, 24, 12, 0, tzinfo=UTC),
    )
    assert autumn == datetime(2026, 10, 25, 7, 0, tzinfo=UTC)  # back to CET on the 25th


@pytest.mark.parametrize("expression", ["61 * * * *", "* * * * * *", "every day"])
def test_a_bad_cron_expression_or_zone_names_its_field(expression: str) -> None:
    with pytest.raises(timing.InvalidSchedule, match=r"^cron:"):
        timing.check_cron(expression)
    with pytest.raises(timing.InvalidSchedule, match=r"^timezone:"):
        timing.zone("Mars/Olympus_Mons")


# -- against a database, with a test duty ----------------------------------------------------

CALLS: list[str] = []


@pytest.fixture
def counted_duty(monkeypatch: pytest.MonkeyPatch, database_url: str) -> Iterator[str]:
    """A duty that records its calls, beside the real ones (which are paused)."""
    real = duties.duties

    def with_counter(settings: Any) -> dict[str, duties.Duty]:
        found = dict(real(settings))
        found["test-counter"] = duties.Duty(
            "test-counter",
            "counter",
            lambda s: CALLS.append("x") or {"calls": len(CALLS)},
            interval_seconds=3600,
        )
        return found

    monkeypatch.setattr(duties, "duties", with_counter)
    CALLS.clear()
    duties.seed(get_settings(), WINTER)
    with session_scope() as session:
        session.execute(update(Schedule).values(paused=True))
    yield database_url


def add_schedule(**fields: Any) -> str:
    values: dict[str, Any] = {"name": "test", "kind": DUTY, "params": {"duty": "test-counter"}}
    values.update(fields)
    with session_scope() as session:
        row = Schedule(**values)
        session.add(row)
        session.flush()
        return row.id


def firings(schedule_id: str) -> list[ScheduleFiring]:
    with session_scope() as session:
        rows = session.scalars(
            select(ScheduleFiring)
            .where(ScheduleFiring.schedule_id == schedule_id)
            .order_by(ScheduleFiring.due_at)
        ).all()
        session.expunge_all()
        return list(rows)


def next_due(schedule_id: str) -> datetime:
    with session_scope() as session:
        row = session.get(Schedule, schedule_id)
        assert row is not None
        return row.next_due_at


def test_paris_schedule_fires_at_the_right_utc_instant(counted_duty: str) -> None:
    first = datetime(2026, 3, 28, 7, 0, tzinfo=UTC)
    sid = add_schedule(cron="0 8 * * *", timezone="Europe/Paris", next_due_at=first)
    assert tick(get_settings(), now=first - timedelta(seconds=1)).fired == []
    assert [f.due_at for f in tick(get_settings(), now=first).fired] == [first]
    summer = datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    assert next_due(sid) == summer
    assert tick(get_settings(), now=summer - timedelta(seconds=1)).fired == []
    assert [f.due_at for f in tick(get_settings(), now=summer).fired] == [summer]
    assert len(CALLS) == 2
    assert [f.outcome for f in firings(sid)] == ["ok: calls=1", "ok: calls=2"]


def test_downtime_across_three_due_times_gives_one_catch_up_run(counted_duty: str) -> None:
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    sid = add_schedule(interval_seconds=3600, next_due_at=start)
    back = start + timedelta(hours=2, minutes=30)  # missed 09:00, 10:00, 11:00
    fired = tick(get_settings(), now=back).fired
    assert [(f.due_at, f.missed) for f in fired] == [(start + timedelta(hours=2), 2)]
    assert tick(get_settings(), now=back + timedelta(minutes=1)).fired == []
    assert next_due(sid) == start + timedelta(hours=3)
    assert len(CALLS) == 1
    # Cron as well: three 08:00 Paris mornings missed, one run on return.
    cron = add_schedule(
        cron="0 8 * * *", timezone="Europe/Paris", next_due_at=datetime(2026, 1, 5, 7, tzinfo=UTC)
    )
    fired = tick(get_settings(), now=datetime(2026, 1, 7, 12, tzinfo=UTC)).fired
    assert [(f.due_at, f.missed) for f in fired if f.schedule_id == cron] == [
        (datetime(2026, 1, 7, 7, tzinfo=UTC), 2)
    ]
    assert next_due(cron) == datetime(2026, 1, 8, 7, tzinfo=UTC)
    assert len(CALLS) == 3  # the hourly one caught up too, once


def test_a_failing_duty_says_why_and_keeps_running(
    counted_duty: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    sid = add_schedule(interval_seconds=60, next_due_at=start, params={"duty": "no-such-duty"})
    for minute in range(4):
        tick(get_settings(), now=start + timedelta(minutes=minute))
    with session_scope() as session:
        row = session.get(Schedule, sid)
        assert row is not None
        assert row.consecutive_failures == 4 and not row.paused
        assert "no duty 'no-such-duty'" in (row.last_outcome or "")


# -- embedded mode: the relay thread runs the cleanup ----------------------------------------


def test_embedded_cleanup_deletes_an_old_job_and_its_files(tmp_path: Path) -> None:
    with running_service("sqlite", tmp_path, JOB_RETENTION_DAYS=7) as svc:
        headers = svc.headers(svc.token())
        job_id = svc.client.post("/reports/dummy", json={}, headers=headers).json()["job_id"]
        assert svc.wait(job_id, headers)["status"] == "completed"
        with session_scope() as session:
            job = session.get(ReportJob, job_id)
            assert job is not None and job.artifact_path
            key = job.artifact_path
            job.created_at = datetime.now(UTC) - timedelta(days=8)
        store = get_store(svc.settings)
        assert store.exists(key)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:  # the relay thread seeds the duties
            with session_scope() as session:
                moved = session.execute(
                    update(Schedule)
                    .where(Schedule.id == "duty-cleanup-old-jobs")
                    .values(next_due_at=datetime.now(UTC) - timedelta(seconds=1))
                )
                if getattr(moved, "rowcount", 0):
                    break
            time.sleep(0.1)
        while time.monotonic() < deadline:  # ... and its next pass runs the cleanup
            with session_scope() as session:
                if session.get(ReportJob, job_id) is None:
                    break
            time.sleep(0.1)
        else:
            raise AssertionError("the cleanup duty did not run")
        assert not store.exists(key)
        while time.monotonic() < deadline:  # the outcome is written once the duty returns
            [firing] = firings("duty-cleanup-old-jobs")
            if firing.outcome is not None:
                break
            time.sleep(0.05)
        assert firing.outcome is not None and "removed=1" in firing.outcome


# -- two real processes, one job per due time ------------------------------------------------

TICKER = textwrap.dedent(
    """
    import sys, time
    from datetime import datetime, timedelta
    from pathlib import Path
    from app.core.config import set_settings
    from app.schedules.tick import tick
    from tests.conftest import make_settings

    url, var, start, first, count = sys.argv[1:6]
    set_settings(make_settings(Path(var), url, LOCAL_WORKERS=0))
    first_due = datetime.fromisoformat(first)
    time.sleep(max(0.0, float(start) - time.time()))
    fired = 0
    for i in range(int(count)):
        fired += len(tick(make_settings(Path(var), url), now=first_due + timedelta(hours=i)).fired)
    print(fired)
    """
)


def test_two_processes_ticking_at_once_create_one_job_per_due_time(tmp_path: Path) -> None:
    database = fresh_database("postgresql", tmp_path)
    set_settings(make_settings(tmp_path, database.url))
    try:
        duties.seed(get_settings(), WINTER)
        with session_scope() as session:
            session.execute(update(Schedule).values(paused=True))
            create_token(session=session, name="scheduler-owner")
            owner = session.scalars(select(User)).one()
            owner_id = owner.id
        first = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        sid = add_schedule(
            kind=REPORT,
            owner_id=owner_id,
            interval_seconds=3600,
            next_due_at=first,
            params={"job_type": "dummy", "job_params": {"delay_seconds": 0, "fail_times": 0}},
        )
        due_times = 12
        start = time.time() + 4  # both processes import, then tick in lockstep
        env = {**os.environ, "PYTHONPATH": str(BACKEND)}
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    TICKER,
                    database.url,
                    str(tmp_path / f"p{n}"),
                    str(start),
                    first.isoformat(),
                    str(due_times),
                ],
                cwd=BACKEND,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(2)
        ]
        outputs = [proc.communicate(timeout=120) for proc in procs]
        assert all(proc.returncode == 0 for proc in procs), outputs
        fired = [int(out.strip().splitlines()[-1]) for out, _ in outputs]
        assert sum(fired) == due_times, fired
        rows = firings(sid)
        assert [f.due_at for f in rows] == [first + timedelta(hours=i) for i in range(due_times)]
        with session_scope() as session:
            jobs = session.scalar(select(func.count()).select_from(ReportJob))
            linked = session.scalar(
                select(func.count(func.distinct(ScheduleFiring.job_id))).where(
                    ScheduleFiring.schedule_id == sid
                )
            )
        assert jobs == due_times and linked == due_times
    finally:
        set_settings(None)
        if database.drop:
            database.drop()
