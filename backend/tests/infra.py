"""Real infrastructure for tests: a private redis-server and real worker processes."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import require
from tests.server import child_pids, free_port, pid_alive, spawn_logged, wait_ready

BACKEND_DIR = Path(__file__).resolve().parents[1]
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def redis_or_skip() -> None:
    require(
        Path(REDIS_SERVER).is_file(),
        "redis-server not installed (apt-get install redis-server): Celery/RQ tests need it",
    )


class RedisServer:
    """A private redis-server on a free port, which a test may stop and start again."""

    def __init__(self, directory: Path) -> None:
        redis_or_skip()
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=0.2).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class WorkerProcess:
    """A real worker started the way operators do: `python celery_manager.py ...`.

    `celery_manager.py worker` is a supervisor whose child is the Celery worker; `children()`
    are still the worker's pool processes, as for the commands that exec (beat, flower).
    """

    def __init__(
        self, args: list[str], env: dict[str, str], log_path: Path, ready_marker: str = "ready."
    ) -> None:
        self.args = args
        self.env = env
        self.log_path = log_path
        self.ready_marker = ready_marker
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.proc = spawn_logged(
            [sys.executable, "celery_manager.py", *self.args],
            self.env,
            self.log_path,
            cwd=BACKEND_DIR,
        )

        def ready() -> bool:  # this start's lines only (a restart appends to the same log)
            return self.ready_marker in self.log_path.read_bytes()[offset:].decode(errors="replace")

        wait_ready(self.proc, ready, self.log_path, "worker", timeout)

    @property
    def supervised(self) -> bool:
        return self.args[:1] == ["worker"]

    def main_pid(self, timeout: float = 10) -> int:
        """The Celery process: the supervisor's child (waiting for a restart), or `proc`."""
        assert self.proc is not None
        if not self.supervised:
            return self.proc.pid
        deadline = time.monotonic() + timeout
        while True:
            pids = child_pids(self.proc.pid)
            if len(pids) == 1 or time.monotonic() > deadline:
                assert len(pids) == 1, f"supervisor {self.proc.pid} has children {pids}"
                return pids[0]
            time.sleep(0.05)

    def children(self) -> list[int]:
        """The pool processes of the Celery worker."""
        assert self.proc is not None
        if self.supervised:
            main = child_pids(self.proc.pid)
            return [pid for parent in main for pid in child_pids(parent)]
        return child_pids(self.proc.pid)

    def kill_all(self) -> None:
        """SIGKILL the worker and its pool children at once (a machine crash, an OOM kill)."""
        assert self.proc is not None
        children = {*child_pids(self.proc.pid), *self.children()}
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        for pid in children:
            deadline = time.monotonic() + 5
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(20)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def service_env(settings_env: dict[str, str]) -> dict[str, str]:
    """The process environment for workers: ours, minus anything that would redirect them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "RQ_"))}
    env.update(settings_env)
    env["PYTHONUNBUFFERED"] = "1"
    return env
