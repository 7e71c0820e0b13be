"""The webhook pass stays flat as the job table grows (issue 16): with 200,000 jobs finished
in the last day without a webhook, its first-attempt query reads the partial index
`ix_report_jobs_webhook_owed` (only jobs that owe a first attempt), before and after the
database has statistics, and still finds the one job that has a webhook.

The plan is asserted, not a time: a time would depend on the machine and its load."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Engine, Table, create_engine, insert, select, text
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.db.base import new_id, utcnow
from app.jobs.models import ReportJob
from app.jobs.store.rows import new_row
from app.users.models import User
from app.webhooks import store
from tests.conftest import DATABASES, fresh_database, make_settings

ROWS = 200_000
INDEX = "ix_report_jobs_webhook_owed"
JOBS = cast(Table, ReportJob.__table__)

pytestmark = pytest.mark.timeout(600)


def _fill(engine: Engine, owner_id: int, rows: int) -> None:
    """`rows` jobs finished over the last day, none with a webhook: one executemany per
    chunk (as `bench/api_scale.py`)."""
    now = utcnow()
    chunk = 20_000
    for start in range(0, rows, chunk):
        values = []
        for n in range(start, min(rows, start + chunk)):
            finished = now - timedelta(hours=23) + timedelta(hours=23) * (n / rows)
            values.append({
                "id": new_id(), "owner_id": owner_id, "job_type": "dummy", "queue": "default",
                "status": "completed", "backend": "local", "params": {"rows": n},
                "max_attempts": 3, "attempts": 1, "history": [], "progress_percent": 100.0,
                "progress_message": "done", "created_at": finished, "queued_at": finished,
                "started_at": finished, "finished_at": finished, "updated_at": finished,
            })  # fmt: skip
        with engine.begin() as conn:
            conn.execute(insert(JOBS), values)


@pytest.fixture(scope="module", params=DATABASES)
def filled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Engine, Settings]]:
    directory = tmp_path_factory.mktemp(f"webhook-scale-{request.param}")
    database = fresh_database(request.param, directory)
    engine = create_engine(database.url)
    try:
        with Session(engine) as session:
            owner = User(name="scale")
            session.add(owner)
            session.commit()
            owner_id = owner.id
        _fill(engine, owner_id, ROWS)
        yield engine, make_settings(Path(directory), database.url)
    finally:
        engine.dispose()
        if database.drop:
            database.drop()


def _plan(engine: Engine, settings: Settings) -> str:
    statement = store.first_attempts(settings)
    sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(explain + sql).all()
    return "\n".join(str(row[-1]) for row in rows)


def _uses_owed_index(plan: str, dialect: str) -> None:
    assert INDEX in plan, plan
    if dialect == "sqlite":
        # The jobs are read through the partial index, never by a scan of the table or of
        # the other index on finished_at.
        assert "SCAN report_jobs" not in plan, plan
        assert "ix_report_jobs_status_finished" not in plan, plan
    else:
        assert "Seq Scan on report_jobs" not in plan, plan


def test_the_first_attempt_query_reads_the_partial_index(filled: tuple[Engine, Settings]) -> None:
    engine, settings = filled
    _uses_owed_index(_plan(engine, settings), engine.dialect.name)
    with engine.begin() as conn:  # once the planner has statistics, too
        conn.execute(text("ANALYZE"))
    _uses_owed_index(_plan(engine, settings), engine.dialect.name)


def _owed_job(engine: Engine, url: str) -> str:
    """A job with a webhook, written as a submission writes it, then finished."""
    with Session(engine) as session:
        owner_id = session.scalar(select(User.id).where(User.name == "scale"))
        assert owner_id is not None
        row: dict[str, Any] = new_row(
            owner_id=owner_id, job_type="dummy", params={"webhook_url": url}, max_attempts=3
        )
    assert row["webhook_url"] == url
    now = utcnow()
    row.update(status="completed", finished_at=now - timedelta(seconds=5), updated_at=now)
    with engine.begin() as conn:
        conn.execute(insert(JOBS), row)
    return str(row["id"])


def test_due_finds_the_job_with_a_webhook_among_them(filled: tuple[Engine, Settings]) -> None:
    engine, settings = filled
    url = "https://hooks.example.com/done"
    job_id = _owed_job(engine, url)
    with Session(engine) as session:
        assert store.due(session, settings) == [(job_id, 1)]
        claim = store.claim(session, job_id, 1, url, lease=60)
        assert claim is not None and claim.url == url
    with Session(engine) as session:
        job = session.get(ReportJob, job_id)
        assert job is not None
        # Out of the index with the claim; the API still shows the URL.
        assert job.webhook_url is None and job.params["webhook_url"] == url
        assert store.due(session, settings) == []  # its retry is the deliveries' to schedule
    with engine.begin() as conn:  # owed again by mistake: a claim refused puts it right
        conn.execute(JOBS.update().where(JOBS.c.id == job_id).values(webhook_url=url))
    with Session(engine) as session:
        assert store.due(session, settings) == [(job_id, 1)]
        assert store.claim(session, job_id, 1, url, lease=60) is None  # claimed once
        assert store.due(session, settings) == []
