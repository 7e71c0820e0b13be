"""The API's hot paths against a trivial route, and their cost as the job table grows.

    .venv/bin/python bench/api.py                  # embedded, then Celery mode, then scale
    .venv/bin/python bench/api.py --only embedded|celery|scale [--workers N] [--seconds 8]
    .venv/bin/python bench/api.py --scale-rows 1000000 [--postgres URL]

Load: one `reportctl serve` (or `--workers N`), `wrk -t2 -c32` per route when wrk is
installed, else the bundled asyncio client (`bench/api_load.py`). Every route is printed as
req/s, p50 and p99 and as a ratio to GET /health/live measured in the same run.

One user submits every job, so the per-user quotas are off for the whole bench
(QUOTA_QUEUED_JOBS=0, QUOTA_SUBMISSIONS_PER_MINUTE=0, QUOTA_ACTIVE_JOBS=0): here the
request path alone; `bench/quotas.py` measures the quotas' own cost.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import Load, fresh_postgres, have_wrk, paused_group, run_load
from api_scale import scale_section

ROOT = Path(__file__).resolve().parents[1]
BACKEND = ROOT / "backend"
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def base_env(tmp: Path, database_url: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "ENVIRONMENT": "prod",
        "VAR_DIR": str(tmp),
        "DATABASE_URL": database_url,
        "LOG_LEVEL": "WARNING",
        "SECRET_KEY": "bench-only-secret-key-bench-only-secret-key",
        "WEBHOOK_SECRET": "bench-only-webhook-secret-bench-only-webhook",
        "QUOTA_ACTIVE_JOBS": "0",
        "QUOTA_QUEUED_JOBS": "0",
        "QUOTA_SUBMISSIONS_PER_MINUTE": "0",
        **extra,
    }


def reportctl(env: dict[str, str], *args: str) -> str:
    return subprocess.run(
        [str(VENV_BIN / "reportctl"), *args],
        env=env,
        cwd=BACKEND,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


class Server:
    def __init__(self, env: dict[str, str], log: Path, workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [str(VENV_BIN / "reportctl"), "serve", "--port", str(self.port)]
        if workers > 1:
            argv += ["--workers", str(workers)]
        self.handle = open(log, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv, env=env, cwd=BACKEND, stdout=self.handle, stderr=self.handle,
            start_new_session=True,
        )  # fmt: skip
        for _ in range(300):
            try:
                if httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(log.read_text()[-3000:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        self.handle.close()


NAME_WIDTH = 58


def line(name: str, load: Load, base: Load | None) -> str:
    ratio = f"{load.rps / base.rps:5.2f}x" if base else "  1.00x"
    errors = f"  ({load.errors} non-2xx)" if load.errors else ""
    return (
        f"  {name:<{NAME_WIDTH}} {load.rps:8,.0f} req/s  p50 {load.p50_ms:6.1f} ms  "
        f"p99 {load.p99_ms:6.1f} ms  {ratio}{errors}"
    )


PAUSED = "POST /reports/dummy (workers paused: as if on other hosts)"
"""The submit with the Celery workers stopped (SIGSTOP): as if they ran on other hosts."""


def load_section(
    title: str,
    server: Server,
    token: str,
    connections: int,
    seconds: float,
    pause: Callable[[], AbstractContextManager[None]] | None = None,
) -> dict[str, Load]:
    """Each route, then (with `pause`) the submit again inside `pause()`: the workers stopped,
    so the row shows what the API alone costs when they run elsewhere."""
    auth = {"Authorization": f"Bearer {token}"}
    job = httpx.post(f"{server.url}/reports/dummy", headers=auth, json={}, timeout=10).json()
    # Steady state: a job has run (the executor's or Celery's processes are up), and the
    # server has had a short load (the first route measured would pay the warm-up).
    until_completed(server, auth, job["job_id"])
    run_load(server.url + "/health/live", headers={}, connections=connections, seconds=2)
    routes = [
        ("GET /health/live", "/health/live", "GET", {}, None),
        ("GET /reports/jobs/{id}", f"/reports/jobs/{job['job_id']}", "GET", auth, None),
        ("GET /reports/jobs?limit=20", "/reports/jobs?limit=20", "GET", auth, None),
        ("POST /reports/dummy", "/reports/dummy", "POST", auth, "{}"),
    ]
    results: dict[str, Load] = {}
    print(f"\n{title}  ({'wrk' if have_wrk() else 'asyncio client'}, {connections} connections,"
          f" {seconds:g} s per route)")  # fmt: skip
    base = None
    if pause is not None:
        routes.append((PAUSED, "/reports/dummy", "POST", auth, "{}"))
    for name, path, method, headers, body in routes:
        with pause() if name == PAUSED and pause is not None else nullcontext():
            load = run_load(
                server.url + path,
                method=method,
                headers=headers,
                body=body,
                connections=connections,
                seconds=seconds,
            )
        results[name] = load
        print(line(name, load, base), flush=True)
        base = base or load
    assert base is not None
    if pause is not None:
        print("  (workers paused: SIGSTOP of the Celery worker's process group during that row;"
              " its messages wait in Redis and run after SIGCONT)")  # fmt: skip
    for name in ("GET /reports/jobs/{id}", "POST /reports/dummy", PAUSED):
        if name not in results:
            continue
        load = results[name]
        met = load.rps >= 0.5 * base.rps and load.p99_ms <= 50
        print(f"  goal {name}: >= 0.5x and p99 <= 50 ms: {'met' if met else 'MISSED'}")
    return results


def embedded(args: argparse.Namespace, tmp: Path) -> None:
    env = base_env(tmp, f"sqlite:///{tmp / 'reports.db'}", JOB_BACKEND="local")
    reportctl(env, "db", "upgrade")
    token = reportctl(env, "token", "create", "bench")
    server = Server(env, tmp / "serve.log", args.workers)
    try:
        load_section(
            f"Embedded mode, SQLite, workers={args.workers}", server, token, 32, args.seconds
        )
    finally:
        server.stop()


def celery(args: argparse.Namespace, tmp: Path) -> None:
    redis_port = free_port()
    redis_proc = subprocess.Popen(
        ["redis-server", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    broker = f"redis://127.0.0.1:{redis_port}/0"
    drop = None
    if args.postgres:  # a database of its own on that server, dropped after
        database, drop = fresh_postgres(args.postgres, "bench_api")
    else:
        database = f"sqlite:///{tmp / 'reports.db'}"
    env = base_env(tmp, database, JOB_BACKEND="celery", CELERY_BROKER_URL=broker)
    worker_log = tmp / "worker.log"
    worker = None
    server = None
    try:
        time.sleep(0.5)
        reportctl(env, "db", "upgrade")
        token = reportctl(env, "token", "create", "bench")
        # The queue of POST /reports/dummy's jobs (JobAccepted.queue), two processes.
        argv = [sys.executable, "celery_manager.py", "worker", "reports", "2", "--loglevel", "INFO"]
        handle = open(worker_log, "wb")  # noqa: SIM115
        worker = subprocess.Popen(
            argv, env=env, cwd=BACKEND, stdout=handle, stderr=handle, start_new_session=True
        )
        server = Server(env, tmp / "serve.log", args.workers)
        _until_worker_runs(server, token, worker, worker_log)
        group = worker.pid  # start_new_session: the supervisor and its Celery processes
        kind = "PostgreSQL" if args.postgres else "SQLite"
        load_section(
            f"Celery mode ({kind}, redis-server, a Celery worker), workers={args.workers}",
            server,
            token,
            32,
            args.seconds,
            pause=lambda: paused_group(group, database),
        )
    finally:
        if server is not None:
            server.stop()
        if worker is not None:
            os.killpg(worker.pid, signal.SIGCONT)  # in case the load failed while paused
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(30)
        redis_proc.terminate()
        redis_proc.wait(10)
        if drop is not None:
            drop()


def until_completed(
    server: Server, auth: dict[str, str], job_id: str, alive: Callable[[], bool] = lambda: True
) -> bool:
    """Wait (up to 120 s) until the job has completed; False if it did not, or `alive` turned
    False."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and alive():
        status = httpx.get(f"{server.url}/reports/jobs/{job_id}", headers=auth).json()
        if status["status"] == "completed":
            return True
        time.sleep(0.2)
    return False


def _until_worker_runs(
    server: Server, token: str, worker: subprocess.Popen[bytes], log: Path
) -> None:
    """Wait until the Celery worker has run a job. Without one every job stays queued and
    each status poll asks the broker: not the figures this section is for."""
    auth = {"Authorization": f"Bearer {token}"}
    job = httpx.post(f"{server.url}/reports/dummy", headers=auth, json={}, timeout=10).json()
    if not until_completed(server, auth, job["job_id"], lambda: worker.poll() is None):
        raise RuntimeError(f"the Celery worker ran no job in 120 s:\n{log.read_text()[-3000:]}")


def sequential_p50(client: httpx.Client, method: str, path: str, body: object, n: int) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.request(method, path, json=body)
        times.append((time.perf_counter() - start) * 1000)
        response.raise_for_status()
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=["embedded", "celery", "scale"])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--scale-rows", type=int, default=1_000_000)
    parser.add_argument(
        "--postgres",
        help="a PostgreSQL URL: the scale section uses it; Celery mode creates a database of"
        " its own on that server and drops it after",
    )
    args = parser.parse_args()
    print(f"bench/api.py  python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    sections = [args.only] if args.only else ["embedded", "celery", "scale"]
    for section in sections:
        with tempfile.TemporaryDirectory(prefix=f"bench-api-{section}-") as tmp:
            if section == "embedded":
                embedded(args, Path(tmp))
            elif section == "celery":
                celery(args, Path(tmp))
            else:
                database = args.postgres or f"sqlite:///{Path(tmp) / 'reports.db'}"
                env = base_env(Path(tmp), database, JOB_BACKEND="local")
                scale_section(env, Path(tmp), args.scale_rows, reportctl, Server, sequential_p50)
    print(json.dumps({"done": True}))


if __name__ == "__main__":
    main()
