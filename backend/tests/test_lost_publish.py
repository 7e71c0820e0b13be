"""A `queued` job whose message the broker lost is re-sent on the relay's next pass.

Real redis-server, real Celery and RQ publishing, no worker: the messages stay where the
test can see (and lose) them. A broker restarted without its data, or an API killed between
commit and publish, must not leave jobs waiting out the visibility timeout (39 min in prod).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from kombu import Connection

from app.core.config import Settings, set_settings
from app.db.base import utcnow
from app.db.session import session_scope
from app.jobs.backends import celery_backend
from app.jobs.dispatch import Dispatcher, set_dispatcher
from app.jobs.models import ReportJob
from app.jobs.registry import kind_of
from app.jobs.relay import relay_once
from app.jobs.states import JobStatus
from app.jobs.store import rows
from app.jobs.submit import accept_job
from app.users.models import User
from tests.conftest import make_settings
from tests.infra import RedisServer

QUEUE = "reports"  # where dummy jobs go


@pytest.fixture
def brokers(
    database_url: str, tmp_path: Path, redis_server: RedisServer
) -> Iterator[tuple[Settings, Dispatcher]]:
    settings = make_settings(
        tmp_path,
        database_url,
        JOB_BACKEND="auto",
        CELERY_BROKER_URL=redis_server.url(0),
        RQ_REDIS_URL=redis_server.url(1),
        QUOTA_ACTIVE_JOBS=0,  # one user's jobs, all on the broker at once (fairness aside)
    )
    set_settings(settings)
    dispatcher = Dispatcher(settings)
    set_dispatcher(dispatcher)
    try:
        yield settings, dispatcher
    finally:
        set_dispatcher(None)
        for db in (0, 1):
            redis.Redis.from_url(redis_server.url(db)).flushdb()


def _submit(n: int) -> list[str]:
    with session_scope() as session:
        owner = User(name=f"lost-{utcnow().timestamp()}")
        session.add(owner)
        session.flush()
        return [
            accept_job(session=session, owner=owner, job_type="dummy", params={}).job_id
            for _ in range(n)
        ]


def _age(settings: Settings, *job_ids: str) -> None:
    """Put the rows past the publish grace (but well within the visibility timeout)."""
    with session_scope() as session:
        for job_id in job_ids:
            job = session.get(ReportJob, job_id)
            assert job is not None and job.status == JobStatus.QUEUED
            job.queued_at = utcnow() - timedelta(seconds=settings.publish_grace + 5)


# kombu's Redis transport keeps a list per priority step: new work goes to step 3, a job
# sent again (handed back) to the queue's own list, which workers pop first.
KEYS = (QUEUE, *(f"{QUEUE}\x06\x16{step}" for step in (3, 6, 9)))


def _waiting(settings: Settings) -> list[str]:
    """Task ids of the messages waiting in the Celery queue, every priority list."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    return [json.loads(raw)["headers"]["id"] for key in KEYS for raw in client.lrange(key, 0, -1)]


def _lose(settings: Settings, job_id: str) -> None:
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    for key in KEYS:
        for raw in client.lrange(key, 0, -1):
            if json.loads(raw)["headers"]["id"] == job_id:
                client.lrem(key, 1, raw)


def test_a_lost_celery_message_is_resent_and_a_delivered_one_is_not(
    brokers: tuple[Settings, Dispatcher],
) -> None:
    settings, dispatcher = brokers
    lost, delivered, waiting = _submit(3)
    assert sorted(_waiting(settings)) == sorted([lost, delivered, waiting])
    _lose(settings, lost)
    # A worker took `delivered` and has not acknowledged it yet (it is running).
    with (
        Connection(settings.CELERY_BROKER_URL) as connection,
        connection.SimpleQueue(QUEUE) as queue,
    ):
        message = queue.get(timeout=2)
        while message.headers["id"] != delivered:
            message.requeue()
            message = queue.get(timeout=2)
        _age(settings, lost, delivered, waiting)

        report = relay_once(settings, dispatcher)

        assert report.resent == [lost]
        assert sorted(_waiting(settings)) == sorted([lost, waiting])  # no duplicate of either
        with session_scope() as session:
            job = session.get(ReportJob, lost)
            assert job is not None and job.status == JobStatus.QUEUED
            assert job.queued_at is not None and job.queued_at > utcnow() - timedelta(seconds=5)
        assert relay_once(settings, dispatcher).resent == []  # held now
        message.ack()


def test_a_broker_restarted_empty_gets_every_queued_job_again(
    brokers: tuple[Settings, Dispatcher],
) -> None:
    settings, dispatcher = brokers
    job_ids = _submit(5)
    _age(settings, *job_ids)
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()  # restarted without its data

    assert sorted(relay_once(settings, dispatcher).resent) == sorted(job_ids)
    assert sorted(_waiting(settings)) == sorted(job_ids)


def test_within_the_publish_grace_nothing_is_resent(brokers: tuple[Settings, Dispatcher]) -> None:
    settings, dispatcher = brokers
    (job_id,) = _submit(1)
    _lose(settings, job_id)  # e.g. the publish is still on its way
    assert relay_once(settings, dispatcher).resent == []


def test_a_broker_too_full_to_read_falls_back_to_the_visibility_timeout(
    brokers: tuple[Settings, Dispatcher], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, dispatcher = brokers
    monkeypatch.setattr(celery_backend, "HELD_SCAN_LIMIT", 1)  # 2 messages wait
    lost, *others = _submit(3)
    _lose(settings, lost)
    _age(settings, lost, *others)
    assert relay_once(settings, dispatcher).resent == []  # can't tell: wait, don't guess
    with session_scope() as session:
        job = session.get(ReportJob, lost)
        assert job is not None
        job.queued_at = utcnow() - timedelta(seconds=settings.visibility_timeout + 1)
    assert relay_once(settings, dispatcher).resent == [lost]


def test_a_message_waiting_past_the_visibility_timeout_in_a_backlog_is_not_resent(
    brokers: tuple[Settings, Dispatcher],
) -> None:
    """A backlog longer than the visibility timeout is a backlog, not a loss: a broker that
    can tell it holds the message is believed (a copy would only lengthen the backlog)."""
    settings, dispatcher = brokers
    (job_id,) = _submit(1)
    with session_scope() as session:
        job = session.get(ReportJob, job_id)
        assert job is not None
        job.queued_at = utcnow() - timedelta(seconds=settings.visibility_timeout + 60)
    assert relay_once(settings, dispatcher).resent == []
    assert _waiting(settings) == [job_id]  # still the one message


def test_an_rq_job_whose_hash_is_gone_is_resent(brokers: tuple[Settings, Dispatcher]) -> None:
    settings, dispatcher = brokers
    rq = dispatcher.backends["rq"]
    with session_scope() as session:
        owner = User(name=f"lost-rq-{utcnow().timestamp()}")
        session.add(owner)
        session.flush()
        jobs = [
            rows.create_job(
                session=session,
                owner=owner,
                job_type="dummy",
                params={},
                max_attempts=4,
                queued_on="rq",
            ).id
            for _ in range(2)
        ]
    for job_id in jobs:
        rq.publish(job_id, kind_of("dummy"))
    _age(settings, *jobs)
    assert relay_once(settings, dispatcher).resent == []
    lost, kept = jobs
    redis.Redis.from_url(settings.RQ_REDIS_URL).delete(f"rq:job:{lost}")

    assert relay_once(settings, dispatcher).resent == [lost]
    # RQ gave up on `kept` without running our code (a refused message, a dead work-horse):
    # its hash remains, but nothing will run it.
    redis.Redis.from_url(settings.RQ_REDIS_URL).hset(f"rq:job:{kept}", "status", "failed")
    assert relay_once(settings, dispatcher).resent == [kept]
    assert rq.held(jobs) == {lost, kept}
