"""What 1,000 open event streams cost the API, against 1,000 clients polling every second.

    .venv/bin/python bench/streams.py                  # a fresh PostgreSQL database
    .venv/bin/python bench/streams.py --sqlite         # SQLite (no database counters)
    .venv/bin/python bench/streams.py --seconds 10 --clients 200   # a smoke run

One `reportctl serve` (embedded mode, one API process, LOCAL_WORKERS embedded workers) on a
database created for the run and dropped after. `--jobs` dummy jobs that sleep
`--job-seconds` while reporting progress (a step every 0.5 s) are kept alive over `--users`
users: each job sits in a slot, and when it ends the bench submits a new one in its slot, in
every phase alike. Then, in the same run, phases of `--seconds` each:

  idle     no client: what the churning jobs, the embedded workers and the relay cost alone
  streams  `--clients` open SSE streams held by this one asyncio process (httpx): most on
           `GET /reports/jobs/{id}/events` of the slots' jobs (a stream that ends with its
           job is reopened on the slot's next job), `--owner-streams` on `GET /reports/events`
  polling  `--clients` clients, each `GET /reports/jobs/{id}` once a second: wrk connections
           when wrk is installed (`--poller wrk`: a 1 s pause after each answer; httpx costs
           about 2 ms of CPU a request, so 1,000 req/s of it would take both cores), else
           httpx tasks in this process, each following its slot's job (`--poller httpx`)

For each: the API process's CPU seconds per second (psutil, the server pid only: neither the
clients nor the embedded workers), the statements the API process sent (a psycopg hook in the
server, see HOOK; PostgreSQL only), the database's transactions per second
(`pg_stat_database`, xact_commit + xact_rollback of the bench database: the workers' too) and
statements per second when pg_stat_statements is loaded, what was delivered (events, reopened
streams, requests), and the ratios streams / polling: raw, net of the idle phase, and against
polling's net cost scaled to `--clients` req/s (one API process serves fewer: see the
`served` line).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api import Server, base_env, reportctl
from api_load import _ms, have_wrk, percentile

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
FINAL = {"completed", "failed", "cancelled"}
CONNECTIONS_PER_CLIENT = 50
"""httpx's pool scans its connections on every request: several small pools, not one of 1,000."""


HOOK = """
import os, threading, time
try:
    import psycopg
except ImportError:
    psycopg = None
if psycopg is not None and os.environ.get("BENCH_SQL_COUNTS"):
    _count = [0]
    _execute = psycopg.Cursor.execute

    def execute(self, *args, **kwargs):
        _count[0] += 1
        return _execute(self, *args, **kwargs)

    psycopg.Cursor.execute = execute

    def _dump():
        path = os.path.join(os.environ["BENCH_SQL_COUNTS"], f"{os.getpid()}.txt")
        while True:
            time.sleep(0.05)
            with open(path + ".tmp", "w") as handle:
                handle.write(str(_count[0]))
            os.replace(path + ".tmp", path)

    threading.Thread(target=_dump, daemon=True).start()
"""
"""Put on the server's PYTHONPATH as `sitecustomize`: counts the statements each process sends
through psycopg (ORM, Core, prepared statements on raw driver connections, pool pings), so the
API process's own queries are told from the embedded workers' (pg_stat_database has both)."""


def api_statements(directory: Path | None, pid: int) -> int | None:
    """How many statements the server process has sent so far, as its hook last wrote."""
    if directory is None:
        return None
    try:
        return int((directory / f"{pid}.txt").read_text())
    except (FileNotFoundError, ValueError):
        return None


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Database:
    """The bench's database: created fresh, its counters read from outside it, then dropped."""

    def __init__(self, tmp: Path, sqlite: bool) -> None:
        self.name = "" if sqlite else f"bench_streams_{uuid.uuid4().hex[:8]}"
        self.statements_note = "n/a (SQLite)"
        self.statements = False
        if sqlite:
            self.url = f"sqlite:///{tmp / 'reports.db'}"
            self.admin = None
            return
        import psycopg

        self.admin = psycopg.connect(PG_ADMIN, autocommit=True)
        self.admin.execute(f'CREATE DATABASE "{self.name}"')
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{self.name}"
        try:
            with psycopg.connect(
                f"postgresql://postgres@127.0.0.1:5432/{self.name}", autocommit=True
            ) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                conn.execute("SELECT count(*) FROM pg_stat_statements")
            self.statements = True
            self.statements_note = "pg_stat_statements"
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0]
            self.statements_note = f"n/a (pg_stat_statements not available: {first})"

    def counters(self) -> tuple[int, int] | None:
        """(transactions, statements) of the bench database so far; None on SQLite."""
        if self.admin is None:
            return None
        self.admin.execute("SELECT pg_stat_clear_snapshot()")
        xacts = self.admin.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (self.name,),
        ).fetchone()[0]
        statements = 0
        if self.statements:
            statements = self.admin.execute(
                "SELECT coalesce(sum(calls), 0) FROM pg_stat_statements s"
                " JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s",
                (self.name,),
            ).fetchone()[0]
        return int(xacts), int(statements)

    def drop(self) -> None:
        if self.admin is not None:
            self.admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
            self.admin.close()


@dataclass
class Slot:
    """One live job position: its current job, and who submits the next when it ends."""

    token: str
    job_id: str = ""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def replace(self, job_id: str) -> None:
        self.job_id = job_id
        self.changed.set()
        self.changed = asyncio.Event()


@dataclass
class Tally:
    events: int = 0
    reopened: int = 0
    requests: int = 0
    errors: int = 0
    open_streams: int = 0
    resubmitted: int = 0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int | str, int] = field(default_factory=dict)


class Churn:
    """Keeps `--jobs` dummy jobs alive: a job that ended is replaced in its slot.

    Its one query every 0.5 s goes to the bench database, so it is in every phase's
    transactions, idle's included (never in the API's queries)."""

    def __init__(self, url: str, slots: list[Slot], job_seconds: float) -> None:
        from sqlalchemy import bindparam, create_engine, text

        self.slots, self.job_seconds = slots, job_seconds
        self.engine = create_engine(url, pool_size=1, max_overflow=0)
        self.query = text("SELECT id, status FROM report_jobs WHERE id IN :ids").bindparams(
            bindparam("ids", expanding=True)
        )

    def _finished(self, ids: list[str]) -> set[str]:
        with self.engine.connect() as conn:
            return {row.id for row in conn.execute(self.query, {"ids": ids}) if row.status in FINAL}

    async def submit(self, client: httpx.AsyncClient, slot: Slot) -> None:
        response = await client.post(
            "/reports/dummy",
            headers={"Authorization": f"Bearer {slot.token}"},
            json={"delay_seconds": self.job_seconds},
        )
        response.raise_for_status()
        slot.replace(response.json()["job_id"])

    async def run(self, client: httpx.AsyncClient, tally: Tally) -> None:
        """Every 0.5 s, one query for which slots' jobs ended, and a submit for each."""
        while True:
            await asyncio.sleep(0.5)
            by_id = {slot.job_id: slot for slot in self.slots}
            done = await asyncio.to_thread(self._finished, list(by_id))
            for job_id in done:
                await self.submit(client, by_id[job_id])
                tally.resubmitted += 1


def clients(base_url: str, count: int, read_timeout: float | None) -> list[httpx.AsyncClient]:
    pools = max(1, -(-count // CONNECTIONS_PER_CLIENT))
    limits = httpx.Limits(
        max_connections=CONNECTIONS_PER_CLIENT, max_keepalive_connections=CONNECTIONS_PER_CLIENT
    )
    timeout = httpx.Timeout(30.0, read=read_timeout)
    return [
        httpx.AsyncClient(base_url=base_url, limits=limits, timeout=timeout) for _ in range(pools)
    ]


async def job_stream(client: httpx.AsyncClient, slot: Slot, tally: Tally) -> None:
    """Follow the slot's job to its end, then its next job, and so on."""
    while True:
        job_id = slot.job_id
        changed = slot.changed
        headers = {"Authorization": f"Bearer {slot.token}"}
        try:
            async with client.stream("GET", f"/reports/jobs/{job_id}/events", headers=headers) as r:
                if r.status_code != 200:
                    tally.errors += 1
                else:
                    tally.open_streams += 1
                    try:
                        async for line in r.aiter_lines():
                            if line.startswith("event:"):
                                tally.events += 1
                    finally:
                        tally.open_streams -= 1
        except httpx.HTTPError:
            tally.errors += 1
            await asyncio.sleep(1)
        tally.reopened += 1
        if slot.job_id == job_id:
            await changed.wait()


async def owner_stream(client: httpx.AsyncClient, token: str, tally: Tally) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    while True:
        try:
            async with client.stream("GET", "/reports/events", headers=headers) as r:
                if r.status_code != 200:
                    tally.errors += 1
                    await asyncio.sleep(1)
                    continue
                tally.open_streams += 1
                try:
                    async for line in r.aiter_lines():
                        if line.startswith("event:"):
                            tally.events += 1
                finally:
                    tally.open_streams -= 1
        except httpx.HTTPError:
            tally.errors += 1
            await asyncio.sleep(1)
        tally.reopened += 1


async def poller(client: httpx.AsyncClient, slot: Slot, offset: float, tally: Tally) -> None:
    """GET the slot's job once a second (a late answer delays the next, never a burst)."""
    loop = asyncio.get_running_loop()
    due = loop.time() + offset
    while True:
        await asyncio.sleep(max(0.0, due - loop.time()))
        started = time.perf_counter()
        try:
            response = await client.get(
                f"/reports/jobs/{slot.job_id}", headers={"Authorization": f"Bearer {slot.token}"}
            )
            if response.status_code != 200:
                tally.errors += 1
                tally.statuses[response.status_code] = (
                    tally.statuses.get(response.status_code, 0) + 1
                )
        except httpx.HTTPError as exc:
            tally.errors += 1
            tally.statuses[type(exc).__name__] = tally.statuses.get(type(exc).__name__, 0) + 1
        tally.latencies.append((time.perf_counter() - started) * 1000)
        tally.requests += 1
        due = max(due + 1.0, loop.time())


@dataclass
class Phase:
    name: str
    seconds: float
    cpu: float
    client_cpu: float
    api_queries: float | None
    xacts: float | None
    statements: float | None
    events: float
    reopened: float
    requests: float
    resubmitted: float
    errors: int
    open_min: int
    open_mean: float
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")


@dataclass
class Bench:
    """What every phase needs: the options, the server and its jobs, the counters."""

    args: argparse.Namespace
    url: str
    server: psutil.Process
    db: Database
    slots: list[Slot]
    tokens: list[str]
    churned: Tally
    counts: Path | None


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


async def measure(name: str, bench: Bench, tally: Tally) -> Phase:
    me, server, db, churned = psutil.Process(), bench.server, bench.db, bench.churned
    before = (
        tally.events, tally.reopened, tally.requests, churned.resubmitted, tally.errors,
        len(tally.latencies),
    )  # fmt: skip
    counters0 = await asyncio.to_thread(db.counters)
    queries0 = api_statements(bench.counts, server.pid)
    cpu0, mine0, t0 = cpu_seconds(server), cpu_seconds(me), time.perf_counter()
    opened: list[int] = []
    while (left := t0 + bench.args.seconds - time.perf_counter()) > 0:
        await asyncio.sleep(min(1.0, left))
        opened.append(tally.open_streams)
    cpu1, mine1, t1 = cpu_seconds(server), cpu_seconds(me), time.perf_counter()
    queries1 = api_statements(bench.counts, server.pid)
    counters1 = await asyncio.to_thread(db.counters)
    wall = t1 - t0
    xacts = statements = api_queries = None
    if counters0 is not None and counters1 is not None:
        xacts = (counters1[0] - counters0[0]) / wall
        statements = (counters1[1] - counters0[1]) / wall if db.statements else None
    if queries0 is not None and queries1 is not None:
        api_queries = (queries1 - queries0) / wall
    latencies = tally.latencies[before[5] :]
    return Phase(
        name=name,
        seconds=wall,
        cpu=(cpu1 - cpu0) / wall,
        client_cpu=(mine1 - mine0) / wall,
        api_queries=api_queries,
        xacts=xacts,
        statements=statements,
        events=(tally.events - before[0]) / wall,
        reopened=(tally.reopened - before[1]) / wall,
        requests=(tally.requests - before[2]) / wall,
        resubmitted=(churned.resubmitted - before[3]) / wall,
        errors=tally.errors - before[4],
        open_min=min(opened, default=0),
        open_mean=statistics.fmean(opened) if opened else 0.0,
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
    )


async def stop(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def idle_phase(bench: Bench) -> Phase:
    await asyncio.sleep(bench.args.settle)
    return await measure("idle", bench, Tally())


async def streams_phase(bench: Bench) -> Phase:
    args, tally = bench.args, Tally()
    pools = clients(bench.url, args.clients, read_timeout=None)
    owners = min(args.owner_streams, args.clients)
    tasks: list[asyncio.Task[Any]] = []
    for index in range(args.clients):
        client = pools[index % len(pools)]
        if index < owners:
            token = bench.tokens[index % len(bench.tokens)]
            tasks.append(asyncio.create_task(owner_stream(client, token, tally)))
        else:
            slot = bench.slots[index % len(bench.slots)]
            tasks.append(asyncio.create_task(job_stream(client, slot, tally)))
        if index % 50 == 49:  # open them over a few seconds, not in one burst
            await asyncio.sleep(0.1)
    deadline = time.perf_counter() + 60
    while tally.open_streams < args.clients * 0.98 and time.perf_counter() < deadline:
        await asyncio.sleep(0.2)
    await asyncio.sleep(args.settle)
    _print_progress(f"streams open: {tally.open_streams} of {args.clients}")
    try:
        return await measure("streams", bench, tally)
    finally:
        await stop(tasks)
        for pool in pools:
            await pool.aclose()


async def polling_phase(bench: Bench) -> Phase:
    args, tally = bench.args, Tally()
    pools = clients(bench.url, args.clients, read_timeout=30.0)
    tasks = [
        asyncio.create_task(
            poller(
                pools[index % len(pools)],
                bench.slots[index % len(bench.slots)],
                index / args.clients,
                tally,
            )
        )
        for index in range(args.clients)
    ]
    await asyncio.sleep(1 + args.settle)
    try:
        return await measure("polling", bench, tally)
    finally:
        if tally.statuses:
            _print_progress(f"polling errors: {tally.statuses}")
        await stop(tasks)
        for pool in pools:
            await pool.aclose()


WRK_SCRIPT = """
local targets = {%s}
local n = 0
math.randomseed(os.time())
request = function()
  n = n + 1
  local target = targets[(n %% #targets) + 1]
  return wrk.format("GET", target[1], {["Authorization"] = "Bearer " .. target[2]})
end
-- after each answer, a connection waits 1 s on average (spread, so they do not beat together)
delay = function() return math.random(500, 1500) end
"""


async def wrk_polling_phase(bench: Bench) -> Phase:
    """The polling clients as wrk connections (`--poller wrk`): its C client costs far less
    CPU per request than httpx, leaving the two cores to the server. The jobs polled are the
    slots' jobs when the phase starts (they end meanwhile: a finished job's read is the same)."""
    args = bench.args
    targets = ", ".join(
        f'{{"/reports/jobs/{slot.job_id}", "{slot.token}"}}' for slot in bench.slots
    )
    script = Path(tempfile.mkdtemp(prefix="bench-streams-wrk-")) / "poll.lua"
    script.write_text(WRK_SCRIPT % targets)
    duration = args.settle + 1 + args.seconds + 2
    proc = await asyncio.create_subprocess_exec(
        "wrk", "-t2", f"-c{args.clients}", f"-d{duration:g}s", "--timeout", "10s", "--latency",
        "-s", str(script), bench.url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    await asyncio.sleep(args.settle + 1)
    client = psutil.Process(proc.pid)
    started, wrk0 = time.perf_counter(), cpu_seconds(client)
    phase = await measure("polling", bench, Tally())
    phase.client_cpu += (cpu_seconds(client) - wrk0) / (time.perf_counter() - started)
    out, err = await proc.communicate()
    shutil.rmtree(script.parent, ignore_errors=True)
    text = out.decode()
    if proc.returncode != 0 or "Requests/sec" not in text:
        raise RuntimeError(f"wrk failed: {err.decode()[-2000:]}")
    phase.requests = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    phase.p50_ms = _ms(re.search(r"\s50%\s+(\S+)", text).group(1))  # type: ignore[union-attr]
    phase.p99_ms = _ms(re.search(r"\s99%\s+(\S+)", text).group(1))  # type: ignore[union-attr]
    for pattern in (r"Non-2xx or 3xx responses:\s+(\d+)", r"Socket errors: (.*)"):
        if found := re.search(pattern, text):
            _print_progress(f"wrk: {found.group(0)}")
            phase.errors += 1
    return phase


def _print_progress(text: str) -> None:
    print(f"  .. {text}", file=sys.stderr, flush=True)


def _rate(value: float | None, width: int = 7) -> str:
    return f"{'n/a':>{width}}" if value is None else f"{value:{width},.1f}"


def report(phase: Phase) -> None:
    delivered = {
        "idle": f"{phase.resubmitted:4.1f} jobs/s resubmitted",
        "streams": (
            f"{phase.events:6,.1f} events/s, {phase.reopened:4.1f} streams reopened/s, "
            f"open min {phase.open_min} mean {phase.open_mean:,.0f}"
        ),
        "polling": (
            f"{phase.requests:6,.1f} req/s, p50 {phase.p50_ms:.1f} ms, p99 {phase.p99_ms:.1f} ms"
        ),
    }[phase.name]
    errors = f"  ({phase.errors} errors)" if phase.errors else ""
    print(
        f"  {phase.name:<8} api cpu {phase.cpu:5.3f} s/s, api {_rate(phase.api_queries)} "
        f"queries/s | db {_rate(phase.xacts)} xact/s, {_rate(phase.statements)} stmt/s | "
        f"client cpu {phase.client_cpu:5.3f} s/s | {delivered}{errors}",
        flush=True,
    )


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b <= 0:
        return "   n/a"
    return f"{a / b:6.3f}"


def summary(idle: Phase, streams: Phase, polling: Phase, bench: Bench) -> None:
    target = bench.args.clients

    def net(phase: Phase, attr: str) -> float | None:
        value, base = getattr(phase, attr), getattr(idle, attr)
        return None if value is None or base is None else value - base

    def projected(attr: str) -> float | None:
        """Polling's net load had all `target` requests a second been served."""
        value = net(polling, attr)
        return None if value is None or polling.requests <= 0 else value * target / polling.requests

    print(f"  streams / polling{'':14}raw   net of idle   net, polling at {target:,} req/s")
    rows = [("api cpu", "cpu"), ("api queries", "api_queries"), ("db transactions", "xacts")]
    if bench.db.statements:
        rows.append(("db statements", "statements"))
    for label, attr in rows:
        raw = ratio(getattr(streams, attr), getattr(polling, attr))
        print(f"    {label:<24}{raw}   {ratio(net(streams, attr), net(polling, attr))}"
              f"        {ratio(net(streams, attr), projected(attr))}")  # fmt: skip
    if not bench.db.statements:
        print(f"    db statements: {bench.db.statements_note}")
    if polling.requests > 0:
        per = {attr: net(polling, attr) for attr in ("cpu", "api_queries", "xacts")}
        cpu_ms = (per["cpu"] or 0) / polling.requests * 1000
        queries = per["api_queries"]
        xacts = per["xacts"]
        print(
            f"    polling served {polling.requests:,.0f} of {target:,} req/s; each request: "
            f"{cpu_ms:.2f} ms api cpu"
            + (f", {queries / polling.requests:.2f} api queries" if queries is not None else "")
            + (f", {xacts / polling.requests:.2f} db transactions" if xacts is not None else "")
        )
    queries = net(streams, "api_queries")
    if queries is not None:
        print(f"    streams: {queries:,.1f} api queries/s net of idle, with {streams.reopened:.1f} "
              f"streams reopened/s (a request each: token, job row)")  # fmt: skip


async def run(args: argparse.Namespace, tmp: Path, db: Database) -> None:
    hook, counts = tmp / "hook", tmp / "counts"
    hook.mkdir()
    counts.mkdir()
    (hook / "sitecustomize.py").write_text(HOOK)
    path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    env = base_env(
        tmp,
        db.url,
        JOB_BACKEND="local",
        API_WORKERS="1",
        LOCAL_WORKERS=str(args.local_workers),
    )
    reportctl(env, "db", "upgrade")
    tokens = [reportctl(env, "token", "create", f"bench{index:02d}") for index in range(args.users)]
    server = Server({**env, "PYTHONPATH": path, "BENCH_SQL_COUNTS": str(counts)}, tmp / "serve.log")
    try:
        slots = [Slot(token=tokens[index % len(tokens)]) for index in range(args.jobs)]
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as control:
            churn = Churn(db.url, slots, args.job_seconds)
            for slot in slots:
                await churn.submit(control, slot)
            bench = Bench(
                args=args,
                url=server.url,
                server=psutil.Process(server.proc.pid),
                db=db,
                slots=slots,
                tokens=tokens,
                churned=Tally(),
                counts=None if args.sqlite else counts,
            )
            churner = asyncio.create_task(churn.run(control, bench.churned))
            await asyncio.sleep(args.settle + args.job_seconds)
            polling = wrk_polling_phase if args.poller == "wrk" else polling_phase
            runs = {"idle": idle_phase, "streams": streams_phase, "polling": polling}
            for round_ in range(args.rounds):
                order = ["idle", "streams", "polling"]
                if round_ % 2:
                    order = ["idle", "polling", "streams"]
                print(f"round {round_ + 1}:", flush=True)
                phases = {}
                for name in order:
                    phases[name] = await runs[name](bench)
                    report(phases[name])
                summary(phases["idle"], phases["streams"], phases["polling"], bench)
            await stop([churner])
            churn.engine.dispose()
    finally:
        server.stop()
        if args.log:
            shutil.copyfile(tmp / "serve.log", args.log)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase")
    parser.add_argument("--clients", type=int, default=1000, help="streams, and polling clients")
    parser.add_argument("--owner-streams", type=int, default=100, help="of them on /reports/events")
    parser.add_argument("--jobs", type=int, default=32, help="dummy jobs kept alive")
    parser.add_argument("--job-seconds", type=float, default=5, help="each job's delay_seconds")
    parser.add_argument("--local-workers", type=int, default=8, help="embedded worker processes")
    parser.add_argument("--users", type=int, default=10, help="owners of the jobs")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--settle", type=float, default=3, help="seconds before each measure")
    parser.add_argument(
        "--poller",
        choices=["httpx", "wrk"],
        default="wrk" if have_wrk() else "httpx",
        help="the polling clients: wrk connections (the default when installed), or httpx here",
    )
    parser.add_argument("--log", type=Path, help="keep the server's log there")
    args = parser.parse_args()
    nofile = raise_nofile()
    print(f"bench/streams.py  python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}, RLIMIT_NOFILE {nofile}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as tmp:
        db = Database(Path(tmp), args.sqlite)
        try:
            print(f"  {'sqlite' if args.sqlite else 'postgresql ' + db.name}, {args.clients} "
                  f"clients ({args.owner_streams} on /reports/events), {args.jobs} jobs of "
                  f"{args.job_seconds:g} s over {args.users} users, {args.local_workers} "
                  f"embedded workers, {args.seconds:g} s a phase; statements: "
                  f"{db.statements_note}")  # fmt: skip
            asyncio.run(run(args, Path(tmp), db))
        finally:
            db.drop()
    print(f"  load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
