"""Run the real server (`reportctl serve`) as a subprocess, for crash and restart tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from subprocess import Popen
from typing import Any

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn_logged(argv: list[str], env: dict[str, str], log_path: Path, **options: Any) -> Popen:
    """Start `argv` in its own session (so a test can kill its whole group), output appended
    to `log_path`."""
    log = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    return subprocess.Popen(
        argv, env=env, stdout=log, stderr=log, start_new_session=True, **options
    )


def wait_ready(
    proc: Popen, ready: Callable[[], bool], log_path: Path, what: str, timeout: float
) -> None:
    """Until `ready()`; fail with the log's tail if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited: {log_path.read_text()[-3000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready: {log_path.read_text()[-3000:]}")


def reportctl(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(BIN / "reportctl"), *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class ServerProcess:
    """`reportctl serve` on a free port, with its own environment and log file."""

    def __init__(
        self, env: dict[str, str], log_path: Path, args: tuple[str, ...] = ("serve",)
    ) -> None:
        self.port = free_port()
        self.env = {**env, "PORT": str(self.port)}
        self.log_path = log_path
        self.args = args
        """`reportctl` arguments: e.g. `("serve", "--workers", "2")`."""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> None:
        self.proc = spawn_logged([str(BIN / "reportctl"), *self.args], self.env, self.log_path)
        wait_ready(self.proc, self._live, self.log_path, "server", timeout)

    def _live(self) -> bool:
        try:
            return httpx.get(self.url + "/health/live", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def children(self) -> list[int]:
        assert self.proc is not None
        return child_pids(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL the server process only: its worker processes must die on their own."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def child_pids(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(child) for child in out.split()]


def descendants(pid: int) -> list[int]:
    """Children, their children, and so on."""
    found: list[int] = []
    todo = [pid]
    while todo:
        children = child_pids(todo.pop())
        found.extend(children)
        todo.extend(children)
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
