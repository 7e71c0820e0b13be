"""The load generator of `bench/api.py`: wrk when installed, else a bundled asyncio client.

Each run answers (req/s, p50 ms, p99 ms, non-2xx count). wrk is far cheaper per request
than any Python client, which matters on a small machine where the client shares the CPUs
with the server: figures of the two are not comparable, so the bench prints which it used.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit


@dataclass(frozen=True)
class Load:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"unparsable wrk latency {text!r}")
    return float(match.group(1)) * _UNIT[match.group(2)]


def run_wrk(
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str],
    body: str | None,
    connections: int,
    seconds: float,
    threads: int = 2,
) -> Load:
    script = [f'wrk.method = "{method}"']
    for name, value in headers.items():
        script.append(f'wrk.headers["{name}"] = "{value}"')
    if body is not None:
        script.append(f"wrk.body = {json.dumps(body)}")
    # Count answers that are not 2xx (wrk only reports them as "Non-2xx").
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write("\n".join(script) + "\n")
        path = handle.name
    try:
        out = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                path,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=seconds + 60,
        ).stdout
    finally:
        Path(path).unlink(missing_ok=True)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket:
        errors += sum(int(value) for value in socket.groups())
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return Load(rps=rps, p50_ms=p50, p99_ms=p99, errors=errors, requests=total)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _client_load(
    url: str,
    method: str,
    headers: dict[str, str],
    body: str | None,
    connections: int,
    seconds: float,
) -> Load:
    import httpx

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.request(method, url, headers=headers, content=body)
                latencies.append((time.perf_counter() - start) * 1000)
                if response.status_code >= 300:
                    errors += 1

        began = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    return Load(
        rps=len(latencies) / elapsed,
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
        errors=errors,
        requests=len(latencies),
    )


def run_load(
    url: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | None = None,
    connections: int = 32,
    seconds: float = 8,
) -> Load:
    headers = dict(headers or {})
    if body is not None:
        headers.setdefault("Content-Type", "application/json")
    if have_wrk():
        return run_wrk(
            url, method=method, headers=headers, body=body, connections=connections, seconds=seconds
        )
    return asyncio.run(_client_load(url, method, headers, body, connections, seconds))


def fresh_postgres(url: str, prefix: str) -> tuple[str, Callable[[], None]]:
    """A new database on the server of `url` (trust auth), and the function that drops it:
    the bench never writes into a database someone else may be using."""
    import psycopg

    parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1))
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    bench_url = urlunsplit(parts._replace(path=f"/{name}"))
    return bench_url.replace("postgresql://", "postgresql+psycopg://", 1), drop


def _holds_database(database_url: str) -> bool:
    """Whether some session is inside a transaction now (between two load rows nothing of
    the API is, so it is a paused worker's): one stopped there would block the submits
    (SQLite's one writer) or hold row locks (PostgreSQL), which is not "on other hosts"."""
    if database_url.startswith("sqlite:///"):
        connection = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=0)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.rollback()
            return False
        except sqlite3.OperationalError:
            return True
        finally:
            connection.close()
    import psycopg

    plain = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(plain, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND pid <> pg_backend_pid() AND xact_start IS NOT NULL"
        ).fetchone()
    return bool(row and row[0])


@contextmanager
def paused_group(pgid: int, database_url: str, attempts: int = 50) -> Iterator[None]:
    """SIGSTOP the process group `pgid` (the Celery worker) for the block, SIGCONT after.

    Stopped between two of its transactions, never inside one (tried again if so). Its
    messages wait in the broker; after SIGCONT it runs them, so nothing is lost."""
    for _ in range(attempts):
        os.killpg(pgid, signal.SIGSTOP)
        if not _holds_database(database_url):
            break
        os.killpg(pgid, signal.SIGCONT)
        time.sleep(0.05)
    else:
        os.killpg(pgid, signal.SIGCONT)
        raise RuntimeError("the workers never left the database free to pause them")
    try:
        yield
    finally:
        os.killpg(pgid, signal.SIGCONT)
