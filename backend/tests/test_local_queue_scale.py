"""The embedded executor's poll stays flat as its backlog grows (issue 16): with 20,000 jobs
queued on it and 20,000 finished, `sweeps.runnable_local` reads the partial index
`ix_report_jobs_local_queue` in order, sorting nothing, before and after the database has
statistics; and it returns the next jobs in `queued_at` order with the due retries among
them, none of another backend's.

The plan is asserted, not a time: a time would depend on the machine and its load."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from sqlalchemy import Engine, Select, Table, create_engine, insert, text
from sqlalchemy.orm import Session

from app.db.base import new_id, utcnow
from app.jobs.models import ReportJob
from app.jobs.store import sweeps
from app.users.models import User
from tests.conftest import DATABASES, fresh_database

QUEUED = 20_000
INDEX = "ix_report_jobs_local_queue"
JOBS = cast(Table, ReportJob.__table__)

pytestmark = pytest.mark.timeout(600)


def _job(owner_id: int, status: str, at: datetime, **values: Any) -> dict[str, Any]:
    return {
        "id": new_id(), "owner_id": owner_id, "job_type": "dummy", "queue": "default",
        "status": status, "backend": "local", "params": {}, "max_attempts": 3,
        "attempts": 0, "history": [], "progress_percent": 0.0, "progress_message": "",
        "created_at": at, "queued_at": at, "updated_at": at, "next_attempt_at": None,
        **values,
    }  # fmt: skip


@pytest.fixture(scope="module", params=DATABASES)
def filled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, int, datetime]]:
    """The backlog queued over the last hour, oldest first; as many jobs already finished."""
    database = fresh_database(request.param, tmp_path_factory.mktemp(f"local-{request.param}"))
    engine = create_engine(database.url)
    try:
        with Session(engine) as session:
            owner = User(name="backlog")
            session.add(owner)
            session.commit()
            owner_id = owner.id
        start = utcnow() - timedelta(hours=1)
        rows = [_job(owner_id, "queued", start + timedelta(seconds=n / 10)) for n in range(QUEUED)]
        rows += [_job(owner_id, "completed", start, attempts=1) for _ in range(QUEUED)]
        with engine.begin() as conn:
            conn.execute(insert(JOBS), rows)
        yield engine, owner_id, start
    finally:
        engine.dispose()
        if database.drop:
            database.drop()


def _plan(engine: Engine, statement: Select[Any]) -> str:
    compiled = statement.compile(engine, compile_kwargs={"literal_binds": True})
    sql = str(compiled).replace("LIMIT -1", "")
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(explain + sql.replace("FOR UPDATE SKIP LOCKED", "")).all()
    return "\n".join(str(row[-1]) for row in rows)


def _reads_the_queue_in_order(plan: str, dialect: str) -> None:
    assert INDEX in plan, plan
    if dialect == "sqlite":
        assert "TEMP B-TREE" not in plan and "SCAN report_jobs" not in plan, plan
    else:
        assert "Sort" not in plan and "Seq Scan on report_jobs" not in plan, plan


def test_the_poll_reads_the_next_jobs_off_the_index(
    filled: tuple[Engine, int, datetime],
) -> None:
    engine = filled[0]
    statement = sweeps._local_queued().params(limit=8)
    _reads_the_queue_in_order(_plan(engine, statement), engine.dialect.name)
    with engine.begin() as conn:  # once the planner has statistics, too
        conn.execute(text("ANALYZE"))
    _reads_the_queue_in_order(_plan(engine, statement), engine.dialect.name)


def test_the_poll_merges_due_retries_in_queue_order(
    filled: tuple[Engine, int, datetime],
) -> None:
    engine, owner_id, start = filled
    now = utcnow()
    early = start - timedelta(minutes=1)
    due = _job(owner_id, "retrying", early, next_attempt_at=now - timedelta(seconds=30))
    later = _job(owner_id, "retrying", early, next_attempt_at=now + timedelta(hours=1))
    elsewhere = _job(owner_id, "queued", early - timedelta(minutes=1), backend="celery")
    with engine.begin() as conn:
        conn.execute(insert(JOBS), [due, later, elsewhere])
    with Session(engine) as session:
        first = sweeps.runnable_local(session=session, limit=4)
        session.commit()
    assert first[0] == due["id"]  # handed to the executor before the whole backlog
    assert later["id"] not in first and elsewhere["id"] not in first
    with Session(engine) as session:
        oldest = session.scalars(
            sweeps._local_queued().params(limit=3)  # the queue alone, in its order
        ).all()
        session.commit()
    assert first[1:] == list(oldest)
