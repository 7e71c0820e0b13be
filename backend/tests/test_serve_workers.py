"""`reportctl serve --workers 2`: two API processes on one port, one executor, one set of metrics.

The real command in a subprocess. Which process served a request is read from the kernel
(`/proc/net/tcp` and each process's sockets), so the test knows that both served submits,
scrapes and streams instead of hoping so.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import fresh_database
from tests.server import ServerProcess, descendants, pid_alive, reportctl

LOCAL_WORKERS = 2


@dataclass
class Served:
    server: ServerProcess
    headers: dict[str, str]
    var_dir: Path

    @property
    def parent(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    def api_workers(self) -> list[int]:
        """uvicorn's worker processes (not its resource tracker)."""
        return [pid for pid in self.server.children() if b"spawn_main" in _cmdline(pid)]

    def job_processes(self, worker: int) -> list[int]:
        return [pid for pid in descendants(worker) if b"spawn_main" in _cmdline(pid)]

    def instance_dir(self) -> Path:
        host = "".join(c if c.isalnum() or c in "_." else "_" for c in socket.gethostname())
        return self.var_dir / "prometheus" / f"{host}-{self.parent}"

    def client(self) -> httpx.Client:
        """A new connection each time: the kernel picks the process that accepts it."""
        return httpx.Client(base_url=self.server.url, headers=self.headers, timeout=30)

    def serving_pid(self, response: httpx.Response) -> int:
        """The API process at the other end of `response`'s (still open) connection."""
        stream = response.extensions["network_stream"]
        client_port = int(stream.get_extra_info("client_addr")[1])
        inode = _server_socket_inode(self.server.port, client_port)
        for pid in self.api_workers():
            with suppress(OSError):
                for fd in os.listdir(f"/proc/{pid}/fd"):
                    with suppress(OSError):
                        if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                            return pid
        raise AssertionError(f"no API worker holds the connection from port {client_port}")


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _server_socket_inode(server_port: int, client_port: int) -> str:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == server_port and (
                int(remote.rsplit(":", 1)[1], 16) == client_port
            ):
                return fields[9]
    raise AssertionError(f"no server socket for client port {client_port}")


def _start(tmp_path: Path, db_kind: str, **extra: str) -> tuple[Served, Any]:
    database = fresh_database(db_kind, tmp_path, migrate=False)
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "VAR_DIR": str(tmp_path),
        "DATABASE_URL": database.url,
        "JOB_BACKEND": "local",
        "CELERY_BROKER_URL": "",
        "RQ_REDIS_URL": "",
        "LOCAL_WORKERS": str(LOCAL_WORKERS),
        "LOG_LEVEL": "INFO",
        **extra,
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    reportctl("db", "upgrade", env=env)
    token = reportctl("token", "create", f"workers-{db_kind}", env=env).strip()
    server = ServerProcess(env, tmp_path / "server.log", args=("serve", "--workers", "2"))
    served = Served(server=server, headers={"Authorization": f"Bearer {token}"}, var_dir=tmp_path)
    server.start()
    _until(lambda: server.log_path.read_text().count("Application startup complete") == 2, 30)
    _until(lambda: len(served.api_workers()) == 2, 10)
    return served, database


def _until(condition: Any, timeout: float, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not met in {timeout} s")


def _stop_and_check_nothing_left(served: Served) -> None:
    """SIGTERM to `reportctl serve` alone (what an init or Docker sends): it stops them all."""
    everyone = descendants(served.parent)
    assert served.server.proc is not None
    served.server.proc.send_signal(signal.SIGTERM)
    served.server.proc.wait(30)
    _until(lambda: not any(pid_alive(pid) for pid in everyone), 10, "children gone")
    assert not served.instance_dir().exists()  # the parent removed the shared directory


@pytest.fixture(params=["sqlite", "postgresql"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    served, database = _start(tmp_path, request.param)
    try:
        yield served
    finally:
        served.server.stop()
        if database.drop:
            database.drop()


def _submit(served: Served, body: dict[str, Any]) -> tuple[str, int]:
    with served.client() as client:
        response = client.post("/reports/dummy", json=body)
        assert response.status_code == 202, response.text
        return str(response.json()["job_id"]), served.serving_pid(response)


def _scrape(served: Served) -> tuple[dict[str, float], int]:
    with served.client() as client:
        response = client.get("/metrics")
        assert response.status_code == 200
        return _sums(response.text), served.serving_pid(response)


def _sums(text: str) -> dict[str, float]:
    sums = {"submitted": 0.0, "completed": 0.0, "active": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "report_jobs_submitted_total":
                sums["submitted"] += sample.value
            elif sample.name == "report_jobs_total" and sample.labels["status"] == "completed":
                sums["completed"] += sample.value
            elif sample.name == "report_jobs_active":
                sums["active"] += sample.value
    return sums


def _submitted_in_file(served: Served, pid: int) -> float:
    """What one process's own counter file says it submitted."""
    path = served.instance_dir() / f"counter_{pid}.db"
    return sum(
        sample.value
        for metric in MultiProcessCollector.merge([str(path)])
        for sample in metric.samples
        if sample.name == "report_jobs_submitted_total"
    )


def _wait_final(served: Served, job_ids: list[str], timeout: float = 90) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    with served.client() as client:
        while True:
            jobs = [client.get(f"/reports/jobs/{job_id}").json() for job_id in job_ids]
            if all(job["status"] in ("completed", "failed", "cancelled") for job in jobs):
                return jobs
            assert time.monotonic() < deadline, [job["status"] for job in jobs]
            time.sleep(0.2)


def _stream_on(served: Served, job_id: str, worker: int) -> list[dict[str, Any]]:
    """The job's events, from a stream that the process `worker` serves."""
    for _ in range(40):
        with (
            served.client() as client,
            client.stream("GET", f"/reports/jobs/{job_id}/events") as response,
        ):
            assert response.status_code == 200
            if served.serving_pid(response) != worker:
                continue
            events: list[dict[str, Any]] = []
            for line in response.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    if events[-1]["status"] in ("completed", "failed", "cancelled"):
                        return events
            return events
    raise AssertionError(f"no stream landed on process {worker}")


def test_two_api_processes_one_executor_shared_metrics_and_streams(served: Served) -> None:
    workers = served.api_workers()
    runners = {worker: served.job_processes(worker) for worker in workers}
    # One seat: LOCAL_WORKERS job processes in all, under one API process.
    assert sorted(len(procs) for procs in runners.values()) == [0, LOCAL_WORKERS], runners
    holder = next(worker for worker, procs in runners.items() if procs)
    other = next(worker for worker in workers if worker != holder)

    served_by: dict[str, int] = {}
    with ThreadPoolExecutor(8) as pool:
        while len(set(served_by.values())) < 2:  # until both processes took submits
            assert len(served_by) < 200, "one process served every submit"
            for job_id, pid in pool.map(lambda _: _submit(served, {}), range(16)):
                served_by[job_id] = pid
    per_process = {pid: list(served_by.values()).count(pid) for pid in workers}
    assert all(per_process.values()), per_process

    jobs = _wait_final(served, list(served_by))
    assert {job["status"] for job in jobs} == {"completed"}
    assert {job["attempts"] for job in jobs} == {1}  # each ran exactly once

    # Each process counted what it served, in its own file of the shared directory...
    for pid, count in per_process.items():
        assert _submitted_in_file(served, pid) == count
    # ...and /metrics from either shows the total.
    total = len(served_by)
    scraped_by: set[int] = set()
    scrapes = 0
    while scraped_by != set(workers) or scrapes < 6:
        assert scrapes < 60, f"scrapes reached only {scraped_by}"
        sums, pid = _scrape(served)
        scraped_by.add(pid)
        scrapes += 1
        assert sums == {"submitted": total, "completed": total, "active": 0.0}, (pid, sums)

    # A stream on either process follows a job run under the holder, to its end.
    slow = [_submit(served, {"delay_seconds": 3})[0] for _ in range(2)]
    with ThreadPoolExecutor(2) as pool:
        streams = list(pool.map(_stream_on, [served] * 2, slow, [other, holder]))
    for events in streams:
        statuses = [event["status"] for event in events]
        assert statuses[-1] == "completed", statuses
        assert "started" in statuses, statuses  # followed live, not only the final state
    assert _scrape(served)[0]["submitted"] == total + 2

    _stop_and_check_nothing_left(served)


def test_the_executor_moves_on_when_its_process_dies(tmp_path: Path) -> None:
    """SIGKILL the seat's holder mid-job: its job processes die with it, another API process
    takes the seat, the job is handed back and runs again; nothing counts twice."""
    served, database = _start(tmp_path, "sqlite", JOB_HEARTBEAT_SECONDS="0.5")
    try:
        holder = next(w for w in served.api_workers() if served.job_processes(w))
        orphans = served.job_processes(holder)
        job_id, _ = _submit(served, {"delay_seconds": 3})
        with served.client() as client:
            _until(lambda: client.get(f"/reports/jobs/{job_id}").json()["status"] == "started", 20)
        assert _scrape(served)[0]["active"] == 1
        os.kill(holder, signal.SIGKILL)
        _until(lambda: not any(pid_alive(pid) for pid in orphans), 10, "job processes gone")

        def moved() -> bool:
            return any(served.job_processes(w) for w in served.api_workers() if w != holder)

        _until(moved, 30, "another process took the seat")
        after = [_submit(served, {})[0] for _ in range(3)]
        jobs = _wait_final(served, [job_id, *after])
        assert [job["status"] for job in jobs] == ["completed"] * 4
        assert [job["attempts"] for job in jobs] == [2, 1, 1, 1]  # the cut attempt, re-run
        # The dead holder's submit still counts once; its job processes' live gauge is gone.
        assert _scrape(served)[0] == {"submitted": 4, "completed": 4, "active": 0}
        assert sum(len(served.job_processes(w)) for w in served.api_workers()) == LOCAL_WORKERS
        _stop_and_check_nothing_left(served)
    finally:
        served.server.stop()
        if database.drop:
            database.drop()
