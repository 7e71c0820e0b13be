"""`celery_manager.py worker` supervises its Celery worker: a worker that dies is started
again (with a capped backoff), and SIGTERM to the supervisor stops both, cleanly.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.supervisor import Backoff
from tests.infra import BACKEND_DIR, WorkerProcess
from tests.server import pid_alive
from tests.stack import Stack, running_stack


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_stable_run() -> None:
    backoff = Backoff(initial=1, maximum=30, stable_after=60)
    quick = [backoff.after_run(ran_for=0.5) for _ in range(7)]
    assert quick == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.after_run(ran_for=61) == 1  # it ran a while: a new crash, not a crash loop
    assert backoff.after_run(ran_for=2) == 2


# A child that crashes at once on its first starts, then runs until told to stop.
_CHILD = """
import os, signal, sys, time
path = sys.argv[1]
with open(path, "a") as log:
    print(f"start {time.monotonic()} {os.getpid()}", file=log, flush=True)
if sum(1 for line in open(path) if line.startswith("start")) <= int(sys.argv[2]):
    sys.exit(3)
def on_term(*_):
    with open(path, "a") as log:
        print("term", file=log, flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
signal.signal(signal.SIGINT, lambda *_: None)  # as if a terminal sent it to the group too
time.sleep(60)
"""

_SUPERVISOR = """
import sys
from app.core.supervisor import Backoff, Supervisor
child = [sys.executable, sys.argv[1], sys.argv[2], sys.argv[3]]
sys.exit(Supervisor(child, Backoff(initial=0.1, maximum=0.4, stable_after=30)).run())
"""


def _starts(path: Path) -> list[float]:
    if not path.exists():
        return []
    return [float(line.split()[1]) for line in path.read_text().splitlines() if "start" in line]


def test_a_crashing_child_is_restarted_with_growing_delays_and_sigint_stops_it(
    tmp_path: Path,
) -> None:
    (tmp_path / "child.py").write_text(textwrap.dedent(_CHILD))
    (tmp_path / "supervisor.py").write_text(textwrap.dedent(_SUPERVISOR))
    record = tmp_path / "child.log"
    scripts = [str(tmp_path / "supervisor.py"), str(tmp_path / "child.py")]
    supervisor = subprocess.Popen(
        [sys.executable, *scripts, str(record), "4"],
        cwd=BACKEND_DIR,
        env={**os.environ, "PYTHONPATH": str(BACKEND_DIR)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while len(_starts(record)) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        starts = _starts(record)
        assert len(starts) == 5, starts
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        # 0.1, 0.2, 0.4, then the cap (0.4), each plus a Python start-up.
        for gap, delay in zip(gaps, [0.1, 0.2, 0.4, 0.4], strict=True):
            assert delay * 0.9 <= gap < delay + 2.0, gaps
        time.sleep(0.5)  # the fifth child is running and has its handlers
        supervisor.send_signal(signal.SIGINT)
        assert supervisor.wait(10) == 0
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(5)
    assert record.read_text().splitlines()[-1] == "term"  # SIGINT reached it as SIGTERM
    assert supervisor.stderr is not None
    log = supervisor.stderr.read()
    assert log.count("exited with code 3") == 4, log


# -- the real command ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("supervised"), JOB_BACKEND="celery") as stack:
        yield stack


def _run_one_job(stack: Stack) -> dict[str, object]:
    headers = stack.service.headers(stack.service.token())
    response = stack.service.client.post("/reports/dummy", json={}, headers=headers)
    assert response.status_code == 202, response.text
    return stack.service.wait(response.json()["job_id"], headers, timeout=30)


@pytest.mark.timeout(90)
def test_a_killed_worker_is_started_again_and_sigterm_stops_both(stack: Stack) -> None:
    worker: WorkerProcess = stack.worker("worker", "reports", "1", name="supervised")
    worker.start()
    assert worker.proc is not None
    supervisor = worker.proc.pid
    first = worker.main_pid()
    old_pool = worker.children()
    assert first != supervisor and old_pool
    offset = len(worker.log())

    os.kill(first, signal.SIGKILL)  # the Celery main process: an OOM kill, a crash
    deadline = time.monotonic() + 30
    while "ready." not in worker.log()[offset:] and time.monotonic() < deadline:
        time.sleep(0.1)
    log = worker.log()[offset:]
    assert "exited with code -9" in log and "ready." in log, log[-3000:]
    second = worker.main_pid()
    assert second != first and pid_alive(supervisor)
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in old_pool) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(pid) for pid in old_pool)  # no orphan of the killed worker left
    job = _run_one_job(stack)  # the queue has a consumer again
    assert job["status"] == "completed" and job["backend"] == "celery", job

    pool = worker.children()
    assert pool
    os.kill(supervisor, signal.SIGTERM)  # the supervisor alone, as `docker stop` does
    assert worker.proc.wait(30) == 0
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in [second, *pool]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_alive(pid) for pid in [second, *pool])
    log = worker.log()[offset:]
    assert "Warm shutdown" in log and "stopped (exit code 0)" in log, log[-3000:]
