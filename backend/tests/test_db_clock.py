"""Times that span processes follow the database's clock, not a host's (which drifts); the
embedded executor's poll on PostgreSQL lets concurrent pollers take different rows.

A host's clock running ahead or behind is simulated by shifting `utcnow` everywhere the
application imported it; the database's clock is left alone.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, update

from app.core.config import get_settings, set_settings
from app.db import base
from app.db.clock import db_now
from app.db.session import session_scope
from app.jobs.dispatch import Dispatcher
from app.jobs.heartbeat import Liveness
from app.jobs.models import ReportJob
from app.jobs.relay import relay_once
from app.jobs.runner import run_job
from app.jobs.states import JobStatus
from app.jobs.store import rows, sweeps, worker
from app.users.models import User

S = JobStatus
SKEWS = [timedelta(minutes=10), timedelta(minutes=-10)]
Skew = Callable[[timedelta], None]


@pytest.fixture
def skew(monkeypatch: pytest.MonkeyPatch) -> Iterator[Skew]:
    """`skew(delta)`: this process's clock now reads `delta` off (every `utcnow` binding)."""
    real = base.utcnow

    def shift(delta: timedelta) -> None:
        def skewed() -> datetime:
            return real() + delta

        for name, module in list(sys.modules.items()):
            if name.split(".")[0] == "app" and getattr(module, "utcnow", None) is not None:
                monkeypatch.setattr(module, "utcnow", skewed)

    yield shift


def _new_jobs(count: int = 1, status: JobStatus = S.QUEUED, **params: object) -> list[str]:
    with session_scope() as session:
        user = User(name=f"clock-{base.new_id()}")
        session.add(user)
        session.flush()
        jobs = [
            rows.create_job(
                session=session,
                owner=user,
                job_type="dummy",
                params={"delay_seconds": 0, **params},
                max_attempts=4,
                queued_on="local",
            )
            for _ in range(count)
        ]
        for job in jobs:
            job.status = status
        session.flush()
        return [job.id for job in jobs]


def _job(job_id: str) -> ReportJob:
    with session_scope() as session:
        job = session.get(ReportJob, job_id)
        assert job is not None
        return job


def _set(job_id: str, **values: object) -> None:
    with session_scope() as session:
        session.execute(update(ReportJob).where(ReportJob.id == job_id).values(**values))


def _reap() -> tuple[list[str], list[str]]:
    report = relay_once(get_settings(), Dispatcher(get_settings()))
    return report.requeued, report.failed


def test_db_now_compares_with_stored_times(database_url: str) -> None:
    """On SQLite the expression is text in the format SQLAlchemy stores `UTCDateTime` in."""
    (job_id,) = _new_jobs()
    stamped = base.utcnow()
    _set(job_id, heartbeat_at=stamped)
    with session_scope() as session:
        now, before, after = session.execute(
            select(
                db_now(),
                ReportJob.heartbeat_at < db_now(1),
                ReportJob.heartbeat_at > db_now(-1),
            ).where(ReportJob.id == job_id)
        ).one()
    assert now.tzinfo is not None and abs(now - stamped) < timedelta(seconds=1)
    assert (before, after) == (True, True)


def test_a_claim_stamps_and_returns_the_database_time(database_url: str, skew: Skew) -> None:
    (job_id,) = _new_jobs()
    skew(timedelta(minutes=10))
    claim = worker.claim(job_id=job_id, worker="w", stale_after=5)
    assert claim is not None
    job = _job(job_id)
    assert claim.started_at == job.started_at == job.heartbeat_at
    assert abs(claim.started_at - base.utcnow()) > timedelta(minutes=9)  # not the host's


@pytest.mark.parametrize("delta", SKEWS, ids=["ahead", "behind"])
def test_a_fresh_heartbeat_is_not_reaped(database_url: str, skew: Skew, delta: timedelta) -> None:
    (job_id,) = _new_jobs()
    skew(delta)  # the worker's host
    claim = worker.claim(job_id=job_id, worker="w", stale_after=5)
    assert claim is not None
    Liveness(job_id, claim.attempts, get_settings()).beat()
    skew(-delta)  # the reaper's host, off the other way
    assert _reap() == ([], [])
    assert worker.claim(job_id=job_id, worker="thief", stale_after=5) is None
    assert _job(job_id).status == S.STARTED


@pytest.mark.parametrize("delta", SKEWS, ids=["ahead", "behind"])
def test_a_stale_heartbeat_is_reaped(database_url: str, skew: Skew, delta: timedelta) -> None:
    stale, taken = _new_jobs(2)
    assert worker.claim(job_id=stale, worker="dead", stale_after=5) is not None
    _set(stale, heartbeat_at=db_now(-60))  # a minute ago by the database's clock
    skew(delta)
    assert _reap() == ([stale], [])
    assert _job(stale).status == S.QUEUED
    # A worker's claim takes over a stale job by the same clock.
    assert worker.claim(job_id=taken, worker="dead", stale_after=5) is not None
    _set(taken, heartbeat_at=db_now(-60))
    claim = worker.claim(job_id=taken, worker="new", stale_after=5)
    assert claim is not None and (claim.worker, claim.attempts) == ("new", 2)


@pytest.mark.parametrize("delta", SKEWS, ids=["ahead", "behind"])
def test_a_retry_waits_for_its_backoff_by_database_time(
    database_url: str, skew: Skew, delta: timedelta
) -> None:
    set_settings(get_settings().model_copy(update={"JOB_RETRY_BACKOFF_SECONDS": 30.0}))
    (job_id,) = _new_jobs(fail_times=1)
    skew(delta)  # the host of the attempt that failed sets the due time
    assert run_job(job_id).status == "retrying"
    due = _job(job_id).next_attempt_at
    assert due is not None
    skew(-delta)  # a host off the other way receives the retry
    assert run_job(job_id).status == "skipped"
    with session_scope() as session:
        assert job_id not in sweeps.runnable_local(session=session, limit=100)
        assert job_id not in sweeps.overdue_retries(session=session, overdue_after=0)
    # Once due by the database's clock, it runs wherever it lands.
    _set(job_id, next_attempt_at=db_now(-1))
    with session_scope() as session:
        assert job_id in sweeps.runnable_local(session=session, limit=100)
    assert run_job(job_id).status == "completed"


@pytest.mark.parametrize("delta", SKEWS, ids=["ahead", "behind"])
def test_the_relay_graces_follow_database_time(
    database_url: str, skew: Skew, delta: timedelta
) -> None:
    pending, queued = _new_jobs(2)
    _set(pending, status=S.PENDING, backend=None, created_at=db_now(-1))
    _set(queued, backend="celery", queued_at=db_now(-1))
    skew(delta)
    with session_scope() as session:
        assert pending in [
            j for j, _ in sweeps.pending_by_turn(session=session, older_than=0.5, per_owner=None)
        ]
        assert pending not in [
            j for j, _ in sweeps.pending_by_turn(session=session, older_than=60, per_owner=None)
        ]
        found = sweeps.queued_on_brokers(session=session, older_than=0.5, expired_after=60)
        assert (queued, "celery", False) in found
        found = sweeps.queued_on_brokers(session=session, older_than=0.5, expired_after=0.5)
        assert (queued, "celery", True) in found
        assert sweeps.queued_on_brokers(session=session, older_than=60, expired_after=60) == []


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_concurrent_pollers_take_different_rows(database_url: str) -> None:
    """Two pollers in open transactions at once (separate connections) skip each other's rows."""
    created = set(_new_jobs(10))
    both_polled = threading.Barrier(2, timeout=10)
    taken: dict[str, list[str]] = {}
    errors: list[BaseException] = []

    def poll(name: str) -> None:
        try:
            with session_scope() as session:
                taken[name] = sweeps.runnable_local(session=session, limit=4)
                both_polled.wait()  # the other polls while our row locks are held
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=poll, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert errors == []
    a, b = set(taken["a"]), set(taken["b"])
    assert len(a) == len(b) == 4
    assert a.isdisjoint(b) and a | b <= created
