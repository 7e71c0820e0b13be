"""Queue overhead: the same no-op jobs through bare Celery and through our full path.

Our path is what a request costs: a DB row, the dispatch (publish + `queued` mark), and in
the worker `run_job` (claim, heartbeat thread, outcome, attempt history). Both run on one
private redis-server with the same worker settings (prefork, concurrency 2, JSON, late acks,
prefetch 1). Prints jobs/s for both, the ratio (goal >= 0.7), and submit->started latency.

    .venv/bin/python bench/queue_overhead.py [--jobs 2000] [--concurrency 2] [--postgres]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
BACKEND = ROOT / "backend"
sys.path.insert(0, str(BACKEND))


def start_worker(
    argv: list[str], env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    handle = open(log, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, stdout=handle, stderr=handle, start_new_session=True
    )
    for _ in range(600):
        if b"ready." in log.read_bytes():
            return proc
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError(log.read_text()[-2000:])


def stop(proc: subprocess.Popen[bytes]) -> None:
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latency(values: list[float]) -> str:
    p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
    return f"submit->started p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"


def bench_bare(n: int, concurrency: int, broker: str, tmp: Path) -> tuple[float, list[float]]:
    env = {**os.environ, "BENCH_BROKER_URL": broker}
    worker = start_worker(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bare_celery_app",
            "worker",
            "-Q",
            "bare",
            "-c",
            str(concurrency),
            "--loglevel",
            "INFO",
            "-n",
            "bare@%h",
            "-E",
        ],
        env,
        ROOT / "bench",
        tmp / "bare.log",
    )
    os.environ["BENCH_BROKER_URL"] = broker
    sys.path.insert(0, str(ROOT / "bench"))
    from bare_celery_app import noop

    conn = redis.Redis.from_url(broker)
    try:
        start = time.perf_counter()
        for _ in range(n):
            noop.delay(time.time())
        while int(conn.get("bare:done") or 0) < n:
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        latencies = [float(x) for x in conn.lrange("bare:latency", 0, -1)]
    finally:
        stop(worker)
    return n / elapsed, latencies


def bench_ours(
    n: int, concurrency: int, redis_url: str, database_url: str, tmp: Path
) -> tuple[float, list[float]]:
    from sqlalchemy import func, select

    from app.core import migrations
    from app.core.config import Settings, set_settings
    from app.core.db import session_scope
    from app.jobs.dispatch import Dispatcher, set_dispatcher
    from app.jobs.submit import accept_job
    from app.models import ReportJob, User

    values = {
        "ENVIRONMENT": "prod",
        "VAR_DIR": str(tmp),
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_url,
        "JOB_BACKEND": "celery",
        "LOG_LEVEL": "INFO",
    }
    settings = Settings(**values)  # type: ignore[arg-type]
    set_settings(settings)
    migrations.upgrade(database_url)
    set_dispatcher(Dispatcher(settings))
    env = {**os.environ, **values}
    worker = start_worker(
        [
            sys.executable,
            "celery_manager.py",
            "worker",
            "reports",
            str(concurrency),
            "--loglevel",
            "INFO",
        ],
        env,
        BACKEND,
        tmp / "ours.log",
    )
    try:
        with session_scope() as session:
            user = User(name="bench")
            session.add(user)
        start = time.perf_counter()
        with session_scope() as session:
            owner = session.get(User, user.id)
            assert owner is not None
            for _ in range(n):
                accept_job(session=session, owner=owner, job_type="noop", params={})
        done = 0
        while done < n:
            time.sleep(0.05)
            with session_scope() as session:
                done = (
                    session.scalar(
                        select(func.count())
                        .select_from(ReportJob)
                        .where(ReportJob.status == "completed")
                    )
                    or 0
                )
        elapsed = time.perf_counter() - start
        with session_scope() as session:
            rows = session.execute(select(ReportJob.created_at, ReportJob.started_at)).all()
        latencies = [(started - created).total_seconds() for created, started in rows]
    finally:
        stop(worker)
    return n / elapsed, latencies


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="use a fresh PostgreSQL database at 127.0.0.1 instead of SQLite",
    )
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    from tests.infra import RedisServer

    server = RedisServer(tmp)
    server.start()
    database_url = f"sqlite:///{tmp / 'bench.db'}"
    drop = None
    if args.postgres:
        from tests.conftest import fresh_database

        database = fresh_database("postgresql", tmp, migrate=False)
        database_url, drop = database.url, database.drop
    try:
        bare_rate, bare_lat = bench_bare(args.jobs, args.concurrency, server.url(0), tmp)
        ours_rate, ours_lat = bench_ours(
            args.jobs, args.concurrency, server.url(1), database_url, tmp
        )
    finally:
        server.stop()
        if drop:
            drop()
    db = "postgresql" if args.postgres else "sqlite"
    print(f"queue overhead: {args.jobs} no-op jobs, concurrency {args.concurrency}, db {db}")
    print(f"  bare celery : {bare_rate:8.1f} jobs/s   {_latency(bare_lat)}")
    print(f"  our path    : {ours_rate:8.1f} jobs/s   {_latency(ours_lat)}")
    print(f"  ratio (ours / bare): {ours_rate / bare_rate:.2f}  (goal >= 0.70)")


if __name__ == "__main__":
    main()
