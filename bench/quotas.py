"""What the per-user quotas and fair shares cost the API: submit and status, on against off.

    .venv/bin/python bench/quotas.py                  # SQLite, 3 rounds of 1000 requests a side
    .venv/bin/python bench/quotas.py --postgres       # a fresh PostgreSQL database
    .venv/bin/python bench/quotas.py --requests 300 --rounds 1   # a smoke run

One API (in-process, the ASGI app through Starlette's TestClient) on one database that
already holds `--history` finished jobs with results (half of them one user's), so the counts
and sums run against a table that is not empty. No worker runs (LOCAL_WORKERS=0): the bench
measures the request path, not the jobs. Rounds alternate quotas on (the defaults:
QUOTA_ACTIVE_JOBS, QUOTA_QUEUED_JOBS, QUOTA_SUBMISSIONS_PER_MINUTE, QUOTA_STORED_BYTES) and
off (all 0), the same settings object switched between rounds, each side first in every other
round, so a slow moment of a shared machine (or the table growing) hits both. Submissions
rotate over 50 users, so no limit is reached and every request takes the accepting path;
with the quotas on, most jobs are held back for their owner's turn (QUOTA_ACTIVE_JOBS),
which is the path a busy service takes. Prints the mean
and p99 cost per request and the ratio on / off (goal: <= 1.1).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from fastapi.testclient import TestClient
from sqlalchemy import insert

from app.core.config import Settings, set_settings
from app.db import migrations
from app.db.session import session_scope
from app.jobs.models import ReportJob
from app.main import create_app
from app.users.store import create_token

USERS = 50
QUOTAS = (
    "QUOTA_ACTIVE_JOBS",
    "QUOTA_QUEUED_JOBS",
    "QUOTA_SUBMISSIONS_PER_MINUTE",
    "QUOTA_STORED_BYTES",
)


def fresh_database(tmp: Path, postgres: bool) -> tuple[str, Any]:
    if not postgres:
        return f"sqlite:///{tmp / 'bench.db'}", None
    import psycopg

    name = f"bench_quotas_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", drop


def seed_history(owner_ids: list[int], count: int) -> None:
    """`count` finished jobs with a result file, half of them the first user's."""
    old = datetime.now(UTC) - timedelta(days=1)
    rows = []
    for index in range(count):
        owner = owner_ids[0] if index % 2 == 0 else owner_ids[index % len(owner_ids)]
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "owner_id": owner,
                "job_type": "dummy",
                "queue": "reports",
                "status": "completed",
                "params": {},
                "attempts": 1,
                "max_attempts": 4,
                "history": [],
                "progress_percent": 100.0,
                "progress_message": "done",
                "artifact_size": 10_000,
                "created_at": old,
                "finished_at": old,
            }
        )
    with session_scope() as session:
        for start in range(0, len(rows), 5000):
            session.execute(insert(ReportJob), rows[start : start + 5000])


def timed(action: Any, n: int) -> list[float]:
    costs = []
    for index in range(n):
        start = time.perf_counter()
        action(index)
        costs.append(time.perf_counter() - start)
    return costs


def p99(values: list[float]) -> float:
    return sorted(values)[int(len(values) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--postgres", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-quotas-") as tmp_name:
        tmp = Path(tmp_name)
        url, drop = fresh_database(tmp, args.postgres)
        try:
            run(args, tmp, url)
        finally:
            if drop is not None:
                drop()


def run(args: argparse.Namespace, tmp: Path, url: str) -> None:
    settings = Settings(
        ENVIRONMENT="prod",
        VAR_DIR=tmp,
        DATABASE_URL=url,
        JOB_BACKEND="local",
        CELERY_BROKER_URL="",
        RQ_REDIS_URL="",
        LOCAL_WORKERS=0,
        LOG_LEVEL="WARNING",
        RELAY_INTERVAL_SECONDS=3600,
        SECRET_KEY="bench-" + uuid.uuid4().hex,
    )
    defaults = {name: getattr(settings, name) for name in QUOTAS}
    set_settings(settings)
    migrations.upgrade(url)
    with session_scope() as session:
        tokens = [create_token(session=session, name=f"user-{i}") for i in range(USERS)]
    from app.users.models import User

    with session_scope() as session:
        owner_ids = [user.id for user in session.query(User).order_by(User.id)]
    seed_history(owner_ids, args.history)
    headers = [{"Authorization": f"Bearer {token}"} for token in tokens]

    def switch(on: bool) -> None:
        for name in QUOTAS:
            setattr(settings, name, defaults[name] if on else 0)

    submits: dict[bool, list[list[float]]] = {True: [], False: []}
    reads: dict[bool, list[list[float]]] = {True: [], False: []}
    with TestClient(create_app(settings)) as client:
        job_ids: list[str] = []

        def submit(index: int) -> None:
            response = client.post("/reports/dummy", headers=headers[index % USERS])
            assert response.status_code == 202, response.text
            job_ids.append(response.json()["job_id"])

        def status(index: int) -> None:
            job_id = job_ids[index % len(job_ids)]
            response = client.get(f"/reports/jobs/{job_id}", headers=headers[0])
            assert response.status_code in (200, 404), response.text

        switch(False)
        timed(submit, 200)  # warm up both paths and the caches
        switch(True)
        timed(submit, 200)
        for round_index in range(args.rounds):
            # Each side goes first in every other round: the table grows as the bench runs.
            for on in (False, True) if round_index % 2 == 0 else (True, False):
                switch(on)
                submits[on].append(timed(submit, args.requests))
                reads[on].append(timed(status, args.requests))

    db = "postgresql" if args.postgres else "sqlite"
    print(
        f"quotas: {args.rounds} rounds of {args.requests} requests a side, db {db}, "
        f"{args.history:,} finished jobs in the table"
    )
    for label, samples in (("submit", submits), ("status", reads)):
        ratios = []
        for off, on in zip(samples[False], samples[True], strict=True):
            ratios.append(statistics.mean(on) / statistics.mean(off))
        for on in (False, True):
            flat = [c for batch in samples[on] for c in batch]
            side = "on " if on else "off"
            mean_ms, p99_ms = statistics.mean(flat) * 1e3, p99(flat) * 1e3
            print(f"  {label} quotas {side}: mean {mean_ms:6.2f} ms  p99 {p99_ms:6.2f} ms")
        median = statistics.median(ratios)
        verdict = "goal met" if median <= 1.1 else "GOAL MISSED"
        rounds = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"  {label} on / off: {median:.2f} (rounds {rounds}; goal <= 1.10: {verdict})")


if __name__ == "__main__":
    main()
