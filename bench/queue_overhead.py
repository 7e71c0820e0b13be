"""Queue overhead: the same no-op jobs through bare Celery and through our full path.

Our path is what a request costs: a DB row, the dispatch (publish, the row born `queued`),
and in the worker `run_job` (claim, heartbeat registration, outcome, attempt history). Both
run on one private redis-server with the same worker settings (prefork, concurrency 2, JSON,
late acks, prefetch 1, task events). Both workers start once; then batches alternate, bare
then ours, for several rounds, so a slow moment of a shared machine hits both sides. Prints
jobs/s per batch, the median ratio (goal >= 0.7), submit->started latency, and the CPU each
party spent per job (where the overhead lives).

    .venv/bin/python bench/queue_overhead.py [--jobs 1000] [--rounds 3] [--postgres]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
BACKEND = ROOT / "backend"
sys.path.insert(0, str(BACKEND))
TICK = os.sysconf("SC_CLK_TCK")


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
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(30)


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (those gone since are skipped)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def _pids(keep: Callable[[Path], bool]) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and keep(entry):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def group_pids(pgid: int) -> list[int]:
    """Every live process of a process group (a worker and its pool children)."""
    return _pids(lambda entry: os.getpgid(int(entry.name)) == pgid)


def named_pids(name: str) -> list[int]:
    return _pids(lambda entry: (entry / "comm").read_text().strip() == name)


class CpuMeter:
    """CPU spent per job by each party during one batch: where the overhead lives."""

    def __init__(self, worker: subprocess.Popen[bytes], redis_pid: int, postgres: bool) -> None:
        self.parties: dict[str, Callable[[], list[int]]] = {
            "submitter": lambda: [os.getpid()],
            "worker": lambda: [worker.pid],
            "pool": lambda: [pid for pid in group_pids(worker.pid) if pid != worker.pid],
            "redis": lambda: [redis_pid],
        }
        if postgres:
            self.parties["postgres"] = lambda: named_pids("postgres")

    def sample(self) -> dict[str, float]:
        return {name: cpu_seconds(pids()) for name, pids in self.parties.items()}


@dataclass
class Side:
    """One side of the comparison, accumulated over the rounds."""

    rates: list[float] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    jobs: int = 0

    def add(
        self, n: int, elapsed: float, before: dict[str, float], after: dict[str, float]
    ) -> None:
        self.rates.append(n / elapsed)
        self.jobs += n
        for name, seconds in after.items():
            self.cpu[name] = self.cpu.get(name, 0.0) + seconds - before[name]

    def cpu_line(self) -> str:
        per_job = {name: seconds / self.jobs * 1000 for name, seconds in self.cpu.items()}
        parts = ", ".join(f"{name} {ms:.2f}" for name, ms in per_job.items())
        return f"cpu ms/job: {parts} (total {sum(per_job.values()):.2f})"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _latency(values: list[float]) -> str:
    p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
    return f"submit->started p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"


class Bare:
    """Bare Celery: a task that only records when it started and counts itself."""

    def __init__(self, concurrency: int, broker: str, tmp: Path, redis_pid: int) -> None:
        env = {**os.environ, "BENCH_BROKER_URL": broker}
        argv = [sys.executable, "-m", "celery", "-A", "bare_celery_app", "worker", "-Q", "bare"]
        argv += ["-c", str(concurrency), "--loglevel", "INFO", "-n", "bare@%h", "-E"]
        self.worker = start_worker(argv, env, ROOT / "bench", tmp / "bare.log")
        os.environ["BENCH_BROKER_URL"] = broker
        sys.path.insert(0, str(ROOT / "bench"))
        from bare_celery_app import noop

        self.noop = noop
        self.redis = redis.Redis.from_url(broker)
        self.meter = CpuMeter(self.worker, redis_pid, postgres=False)
        self.side = Side()

    def batch(self, n: int) -> None:
        self.redis.delete("bare:done", "bare:latency")
        before = self.meter.sample()
        start = time.perf_counter()
        for _ in range(n):
            self.noop.delay(time.time())
        while int(self.redis.get("bare:done") or 0) < n:
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        self.side.add(n, elapsed, before, self.meter.sample())
        self.side.latencies += [float(x) for x in self.redis.lrange("bare:latency", 0, -1)]

    def close(self) -> None:
        stop(self.worker)


class Ours:
    """Our path: `accept_job` (row + publish) and a worker started by `celery_manager.py`."""

    def __init__(
        self, concurrency: int, redis_url: str, database_url: str, tmp: Path, redis_pid: int
    ) -> None:
        from app.core.config import Settings, set_settings
        from app.db import migrations
        from app.db.session import session_scope
        from app.jobs.dispatch import Dispatcher, set_dispatcher
        from app.users.models import User

        values = {
            "ENVIRONMENT": "prod",
            "VAR_DIR": str(tmp),
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": redis_url,
            "JOB_BACKEND": "celery",
            "LOG_LEVEL": "INFO",
            # One user submits every job: the per-user quotas and fair shares are measured
            # by bench/quotas.py; here, the queue path alone.
            "QUOTA_ACTIVE_JOBS": "0",
            "QUOTA_QUEUED_JOBS": "0",
            "QUOTA_SUBMISSIONS_PER_MINUTE": "0",
        }
        settings = Settings(**values)  # type: ignore[arg-type]
        set_settings(settings)
        migrations.upgrade(database_url)
        set_dispatcher(Dispatcher(settings))
        argv = [sys.executable, "celery_manager.py", "worker", "reports", str(concurrency)]
        argv += ["--loglevel", "INFO"]
        self.worker = start_worker(argv, {**os.environ, **values}, BACKEND, tmp / "ours.log")
        with session_scope() as session:
            user = User(name="bench")
            session.add(user)
        self.user_id = user.id
        self.meter = CpuMeter(self.worker, redis_pid, database_url.startswith("postgresql"))
        self.side = Side()

    def batch(self, n: int) -> None:
        from sqlalchemy import func, select

        from app.db.session import session_scope
        from app.jobs.models import ReportJob
        from app.jobs.submit import accept_job
        from app.users.models import User

        before = self.meter.sample()
        start = time.perf_counter()
        accepted = []
        with session_scope() as session:
            owner = session.get(User, self.user_id)
            assert owner is not None
            for _ in range(n):
                accepted.append(
                    accept_job(session=session, owner=owner, job_type="noop", params={})
                )
        # Every job in this database is the bench's: wait for the running total, one cheap
        # count per poll (polling is the submitter's CPU too).
        completed = select(func.count()).where(ReportJob.status == "completed")
        expected = self.side.jobs + n
        done = 0
        while done < expected:
            time.sleep(0.02)
            with session_scope() as session:
                done = session.scalar(completed) or 0
        elapsed = time.perf_counter() - start
        self.side.add(n, elapsed, before, self.meter.sample())
        this_batch = ReportJob.id.in_([job.job_id for job in accepted])
        with session_scope() as session:
            rows = session.execute(
                select(ReportJob.created_at, ReportJob.started_at).where(this_batch)
            ).all()
        self.side.latencies += [(started - created).total_seconds() for created, started in rows]

    def close(self) -> None:
        stop(self.worker)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per batch")
    parser.add_argument("--rounds", type=int, default=3)
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
    assert server.proc is not None
    database_url = f"sqlite:///{tmp / 'bench.db'}"
    drop = None
    if args.postgres:
        from tests.conftest import fresh_database

        database = fresh_database("postgresql", tmp, migrate=False)
        database_url, drop = database.url, database.drop
    db = "postgresql" if args.postgres else "sqlite"
    print(
        f"queue overhead: {args.rounds} rounds of {args.jobs} no-op jobs each side, "
        f"concurrency {args.concurrency}, db {db}"
    )
    bare = ours = None
    try:
        bare = Bare(args.concurrency, server.url(0), tmp, server.proc.pid)
        ours = Ours(args.concurrency, server.url(1), database_url, tmp, server.proc.pid)
        ratios = []
        for number in range(1, args.rounds + 1):
            bare.batch(args.jobs)
            ours.batch(args.jobs)
            b, o = bare.side.rates[-1], ours.side.rates[-1]
            ratios.append(o / b)
            print(
                f"  round {number}: bare {b:6.1f} jobs/s, ours {o:6.1f} jobs/s, ratio {o / b:.2f}"
            )
    finally:
        for side in (ours, bare):
            if side is not None:
                side.close()
        server.stop()
        if drop:
            drop()
    for name, side in (("bare celery", bare.side), ("our path   ", ours.side)):
        rate = statistics.median(side.rates)
        print(f"  {name}: {rate:8.1f} jobs/s (median)  {_latency(side.latencies)}")
        print(f"  {name}: {side.cpu_line()}")
    print(
        f"  ratio (ours / bare), median of rounds: {statistics.median(ratios):.2f}  (goal >= 0.70)"
    )


if __name__ == "__main__":
    main()
