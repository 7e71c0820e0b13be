"""Prepared statements agree with the ORM on every type they write and read, on both databases."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import bindparam, insert, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from app.core.config import set_settings
from app.db.base import UTCDateTime, utcnow
from app.db.prepared import PreparedStatement
from app.db.session import session_scope
from app.jobs.models import ReportJob
from app.jobs.store import rows
from app.jobs.store.transitions import JOBS
from app.users.models import User
from tests.conftest import _admin_exec, fresh_database, make_settings


def _job() -> str:
    with session_scope() as session:
        user = User(name=f"u-{utcnow().timestamp()}")
        session.add(user)
        session.flush()
        job = rows.create_job(
            session=session, owner=user, job_type="dummy", params={"a": 1}, max_attempts=3
        )
        return job.id


UPDATE = PreparedStatement(
    update(JOBS)
    .where(JOBS.c.id == bindparam("p_id"))
    .values(
        history=bindparam("p_history", type_=JOBS.c.history.type),
        heartbeat_at=bindparam("p_at", type_=UTCDateTime()),
        next_attempt_at=None,
        progress_message="constant",
    )
    .returning(JOBS.c.params, JOBS.c.history, JOBS.c.heartbeat_at, JOBS.c.attempts)
)


def test_values_round_trip_like_the_orm(database_url: str) -> None:
    job_id = _job()
    with session_scope() as session:
        session.get(ReportJob, job_id).next_attempt_at = utcnow()  # type: ignore[union-attr]
    at = utcnow() - timedelta(minutes=3)
    history = [{"attempt": 1, "error": "é ünïcode", "nested": {"x": [1, 2.5, None]}}]

    row = UPDATE.returning({"p_id": job_id, "p_history": history, "p_at": at})

    assert row == {"params": {"a": 1}, "history": history, "heartbeat_at": at, "attempts": 0}
    with session_scope() as session:
        job = session.get(ReportJob, job_id)
        assert job is not None
        assert (job.history, job.heartbeat_at, job.next_attempt_at) == (history, at, None)
        assert job.progress_message == "constant"


def test_no_match_and_rowcount(database_url: str) -> None:
    assert UPDATE.returning({"p_id": "missing", "p_history": [], "p_at": utcnow()}) is None
    plain = PreparedStatement(
        update(JOBS).where(JOBS.c.id == bindparam("p_id")).values(error=bindparam("p_error"))
    )
    assert plain.rowcount({"p_id": "missing", "p_error": "x"}) == 0
    assert plain.rowcount({"p_id": _job(), "p_error": "x"}) == 1


def test_a_forgotten_parameter_is_refused_before_the_database(database_url: str) -> None:
    with pytest.raises(TypeError, match="p_at"):
        UPDATE.returning({"p_id": _job(), "p_history": []})


def test_driver_errors_are_sqlalchemy_errors_and_free_the_connection(database_url: str) -> None:
    job_id = _job()
    # The id exists and the other NOT NULL columns are missing: the database refuses it.
    invalid = PreparedStatement(insert(JOBS).values(id=bindparam("p_id")), durable=True)
    with pytest.raises(IntegrityError) as caught:
        invalid.rowcount({"p_id": job_id})
    assert isinstance(caught.value, DBAPIError)
    # The failed statement rolled back; the pooled connection still works.
    assert UPDATE.returning({"p_id": job_id, "p_history": [], "p_at": utcnow()}) is not None


@pytest.fixture
def postgres_url(tmp_path: Path) -> Iterator[str]:
    database = fresh_database("postgresql", tmp_path)
    set_settings(make_settings(tmp_path, database.url))
    try:
        yield database.url
    finally:
        set_settings(None)
        assert database.drop is not None
        database.drop()


def test_a_dropped_server_connection_is_replaced_before_the_next_statement(
    postgres_url: str,
) -> None:
    """What a PostgreSQL restart or failover does to the workers' pooled connections: the
    pool pings at checkout, so no job's write meets the dead connection."""
    job_id = _job()
    touch = {"p_id": job_id, "p_history": [], "p_at": utcnow()}
    assert UPDATE.returning(touch) is not None  # the pool now holds a live connection
    database = postgres_url.rsplit("/", 1)[1]
    _admin_exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        f"WHERE datname = '{database}' AND pid <> pg_backend_pid()"
    )
    assert UPDATE.returning(touch) is not None
    assert UPDATE.returning(touch) is not None
