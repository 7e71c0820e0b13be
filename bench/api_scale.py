"""The scale section of `bench/api.py`: each hot path on an empty job table, then with
`rows` finished jobs in it (a tenth of them the caller's), sequential requests, p50 of 60
after 10 untimed ones.

The rows are written with the server stopped, by one Core executemany per chunk; they are
recent (inside JOB_RETENTION_DAYS), so cleanup finds nothing to delete and what is measured
is the cost of looking, which must not grow with the table. They finished evenly over the
last 5 days, so a fifth of them inside WEBHOOK_MAX_AGE_SECONDS (a day), as in real use: the
webhook pass of each relay pass looks at recent jobs, none of which has a webhook here.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

RUNS = 60
WARM_UP = 10


def _settings(env: dict[str, str]) -> Any:
    from app.core.config import Settings, set_settings

    names = set(Settings.model_fields)
    settings = Settings(**{k: v for k, v in env.items() if k in names})  # type: ignore[arg-type]
    set_settings(settings)
    return settings


def _fill(rows: int, caller_id: int) -> None:
    from sqlalchemy import insert

    from app.db.base import new_id, utcnow
    from app.db.session import session_scope
    from app.jobs.models import ReportJob
    from app.users.models import User

    with session_scope() as session:
        others = [User(name=f"other-{n}") for n in range(99)]
        session.add_all(others)
        session.flush()
        owners = [user.id for user in others]
    now = utcnow()
    span = timedelta(days=5) - timedelta(minutes=1)  # the newest finished a minute ago
    chunk = 20_000
    for start in range(0, rows, chunk):
        values = []
        for n in range(start, min(rows, start + chunk)):
            created = now - timedelta(days=5) + span * (n / rows)  # within retention
            values.append({
                "id": new_id(), "owner_id": caller_id if n % 10 == 0 else owners[n % 99],
                "job_type": "dummy", "queue": "default", "status": "completed",
                "backend": "local", "params": {}, "max_attempts": 3, "attempts": 1,
                "history": [], "progress_percent": 100.0, "progress_message": "done",
                "created_at": created, "queued_at": created, "started_at": created,
                "finished_at": created + timedelta(seconds=1), "updated_at": created,
                "result": {"ok": True},
            })  # fmt: skip
        with session_scope() as session:
            session.execute(insert(ReportJob), values)


def _measure(server_url: str, token: str) -> dict[str, float]:
    from app.core.config import get_settings
    from app.jobs.cleanup import cleanup_old_jobs
    from app.jobs.dispatch import Dispatcher
    from app.jobs.relay import relay_once

    headers = {"Authorization": f"Bearer {token}"}
    figures: dict[str, float] = {}
    with httpx.Client(base_url=server_url, headers=headers, timeout=30) as client:
        job = client.post("/reports/dummy", json={}).json()["job_id"]

        def p50(method: str, path: str, body: object = None) -> float:
            for _ in range(WARM_UP):  # a fresh server's connections have cold page caches
                client.request(method, path, json=body).raise_for_status()
            times = []
            for _ in range(RUNS):
                began = time.perf_counter()
                client.request(method, path, json=body).raise_for_status()
                times.append((time.perf_counter() - began) * 1000)
            return statistics.median(times)

        figures["submit (POST /reports/dummy)"] = p50("POST", "/reports/dummy", {})
        _until_finished(client)
        figures["status (GET /reports/jobs/{id})"] = p50("GET", f"/reports/jobs/{job}")
        figures["first list page, with total"] = p50("GET", "/reports/jobs?limit=50")
        figures["first page, status=completed"] = p50("GET", "/reports/jobs?status=completed")
    settings = get_settings()
    dispatcher = Dispatcher(settings)

    def timed(action: Callable[[], object]) -> float:
        times = []
        for _ in range(10):
            began = time.perf_counter()
            action()
            times.append((time.perf_counter() - began) * 1000)
        return statistics.median(times)

    figures["relay pass (relay_once)"] = timed(lambda: relay_once(settings, dispatcher))
    figures["cleanup (cleanup_old_jobs)"] = timed(cleanup_old_jobs)
    return figures


def _until_finished(client: httpx.Client) -> None:
    """Wait for the executor to finish the jobs just submitted: the list pages then hold the
    same 50 completed jobs on the empty table as on the full one (and the executor does not
    share the CPUs with the requests timed)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        live = [
            client.get("/reports/jobs", params={"status": status, "limit": 1}).json()["total"]
            for status in ("pending", "queued", "started", "retrying")
        ]
        if not any(live):
            return
        time.sleep(0.2)
    raise RuntimeError("the submitted jobs did not finish in 120 s")


def scale_section(
    env: dict[str, str],
    tmp: Path,
    rows: int,
    reportctl: Callable[..., str],
    server_class: Any,
    _sequential: Any,
) -> None:
    os.environ.update(env)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))
    reportctl(env, "db", "upgrade")
    token = reportctl(env, "token", "create", "bench")
    _settings(env)
    from sqlalchemy import select

    from app.db.session import session_scope
    from app.users.models import User

    with session_scope() as session:
        caller_id = session.scalar(select(User.id).where(User.name == "bench"))
    database = "PostgreSQL" if env["DATABASE_URL"].startswith("postgresql") else "SQLite"
    print(f"\nScale, {database}: p50 of {RUNS} sequential requests (relay, cleanup: of 10 runs)")
    server = server_class(env, tmp / "serve-empty.log")
    try:
        empty = _measure(server.url, token)
    finally:
        server.stop()
    began = time.perf_counter()
    _fill(rows, caller_id)
    print(f"  ({rows:,} finished jobs written in {time.perf_counter() - began:.0f} s, "
          f"{rows // 10:,} of them the caller's)")  # fmt: skip
    server = server_class(env, tmp / "serve-full.log")
    try:
        full = _measure(server.url, token)
    finally:
        server.stop()
    print(f"  {'':<34} {'empty':>9} {f'{rows:,} jobs':>14} {'ratio':>7}")
    for name, before in empty.items():
        after = full[name]
        verdict = "goal met" if after / before <= 1.2 else "GOAL MISSED"
        print(f"  {name:<34} {before:7.2f} ms {after:11.2f} ms {after / before:6.2f}x  {verdict}")
