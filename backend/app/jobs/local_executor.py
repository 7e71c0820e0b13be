"""The embedded executor: worker *processes* that take jobs from the database.

Processes, not threads, so a CPU-bound report never slows the API. The database is the queue
(claimed by compare-and-set), so a killed server loses nothing: on the next start the relay
hands back whatever was left `queued` or `started`.

`ExecutorSeat` decides which API process of a `reportctl serve --workers N` runs it: one,
so LOCAL_WORKERS means the same whatever N (its docstring says why and how).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import multiprocessing as mp
import os
import queue
import signal
import socket
import threading
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from app.core import metrics_multiprocess
from app.core.config import Settings, set_settings

log = logging.getLogger(__name__)
_ctx = mp.get_context("spawn")

HEALTHY_AFTER_SECONDS = 30.0
"""A worker that dies sooner than this after its start counts as crash-looping."""
MAX_RESTART_DELAY_SECONDS = 60.0


@dataclass
class _Slot:
    """One worker position: its process and its crash history."""

    proc: SpawnProcess
    started: float
    crashes: int = 0
    """Consecutive deaths soon after a start (a worker that dies at once, e.g. bad config)."""
    restart_at: float | None = None
    """When a dead worker may be replaced; None while it is alive (or not yet noticed)."""


class LocalExecutor:
    """A fixed pool of worker processes owned by the API process."""

    def __init__(self, settings: Settings, workers: int | None = None) -> None:
        self.settings = settings
        self.size = workers or settings.LOCAL_WORKERS
        self._wake: Queue[None] = _ctx.Queue()
        self._stop: Event = _ctx.Event()
        self._slots: list[_Slot] = []

    def start(self) -> None:
        self._slots = [_Slot(self._spawn(index), time.monotonic()) for index in range(self.size)]
        log.info("local executor started with %d worker processes", self.size)

    def _spawn(self, index: int) -> SpawnProcess:
        proc = _ctx.Process(
            target=_worker_main,
            args=(self.settings, self._wake, self._stop, os.getpid()),
            name=f"local-worker-{index}",
            daemon=True,
        )
        proc.start()
        return proc

    def wake(self) -> None:
        """Nudge an idle worker; cheap and never blocks (workers also poll)."""
        with contextlib.suppress(queue.Full, ValueError, OSError):
            self._wake.put_nowait(None)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for _ in self._slots:
            self.wake()
        for proc in self._procs:
            proc.join(timeout)
            if proc.is_alive():
                proc.terminate()
                proc.join(2)
            if proc.pid is not None:
                metrics_multiprocess.mark_process_dead(proc.pid)
        self._slots.clear()

    @property
    def _procs(self) -> list[SpawnProcess]:
        return [slot.proc for slot in self._slots]

    def supervise(self) -> int:
        """Replace worker processes that died (OOM kill, segfault in a native library).

        A worker that dies soon after its start again and again (bad configuration, a
        library that crashes on import) is restarted after a growing delay, 1 s doubling up
        to a minute, not on every relay pass. Returns how many were started.
        """
        restarted = 0
        if self._stop.is_set():
            return 0
        now = time.monotonic()
        for index, slot in enumerate(self._slots):
            if slot.proc.is_alive():
                continue
            if slot.restart_at is None:  # a death not yet noticed
                slot.restart_at = now + self._restart_delay(slot, now)
                if slot.proc.pid is not None:
                    # Its jobs are no longer active.
                    metrics_multiprocess.mark_process_dead(slot.proc.pid)
                log.warning(
                    "local worker %s died (exit %s); restarting in %.0f s",
                    slot.proc.name,
                    slot.proc.exitcode,
                    slot.restart_at - now,
                )
            if now >= slot.restart_at:
                self._slots[index] = _Slot(self._spawn(index), now, crashes=slot.crashes)
                restarted += 1
        return restarted

    @staticmethod
    def _restart_delay(slot: _Slot, now: float) -> float:
        if now - slot.started >= HEALTHY_AFTER_SECONDS:
            slot.crashes = 0
            return 0.0
        slot.crashes += 1
        return float(min(MAX_RESTART_DELAY_SECONDS, 2 ** (slot.crashes - 1)))

    @property
    def alive(self) -> int:
        return sum(proc.is_alive() for proc in self._procs)


SEAT_FILE = "local-executor.lock"
"""In the instance directory `reportctl serve --workers N` shares: the seat's lock."""


class ExecutorSeat:
    """Which API process of one `reportctl serve` runs the executor and the relay's passes.

    With `--workers N` a `reportctl serve` is N API processes (uvicorn workers on one port).
    If each ran its own executor, there would be N x LOCAL_WORKERS job processes (N times
    the memory and the concurrent reports), so every sizing would change with N; splitting
    LOCAL_WORKERS over them needs an index uvicorn does not give its workers, and still
    leaves a job waiting in one process while another's are idle. So they share one seat:
    an exclusive `flock` on `SEAT_FILE` in the directory the parent made for the instance
    (`metrics_multiprocess.shared_instance`). The holder runs the executor,
    LOCAL_WORKERS processes as with a single API process, and the relay's database passes
    (one pass per interval per `reportctl serve`, as before; the passes are safe to run
    concurrently, so this only saves work). Every other process serves requests, keeps its
    own dispatcher's breakers and consumer view current, and tries the seat at each relay
    tick: when the holder dies the kernel drops its lock, its job processes die with it (the
    reaper hands their jobs back), and another process takes over within
    RELAY_INTERVAL_SECONDS. Jobs run once whoever holds it: the claim is a compare-and-set.

    A submit served without the seat wakes an idle job process through a datagram to the
    holder (an abstract Unix socket named after the lock file); a lost one costs at most
    LOCAL_POLL_SECONDS, since job processes also poll. Without a shared directory (one API
    process, or an app built in a test) the seat is simply taken: the behaviour of before.
    """

    def __init__(self, settings: Settings, directory: Path | None) -> None:
        self.settings = settings
        self.executor: LocalExecutor | None = None
        self._lock_path = directory / SEAT_FILE if directory is not None else None
        self._address = (
            "\0reportctl-wake-" + hashlib.sha256(str(self._lock_path).encode()).hexdigest()[:32]
        )
        self._lock_fd: int | None = None
        self._held = False
        self._mutex = threading.Lock()  # the relay's takeover against a health probe
        self._stopped = threading.Event()
        self._sender: socket.socket | None = None
        self._listener: threading.Thread | None = None

    @property
    def held(self) -> bool:
        """This process holds the seat: it runs the executor and the relay's passes."""
        return self._held

    def take(self) -> bool:
        """Take the seat if it is free; then start the executor and listen for wakes."""
        with self._mutex:
            if self._held or self._stopped.is_set():
                return self._held
            if self._lock_path is not None and not self._lock(self._lock_path):
                return False
            self._held = True
        if self.settings.LOCAL_WORKERS > 0:
            self.executor = LocalExecutor(self.settings)
            self.executor.start()
            if self._lock_path is not None:
                self._listen()
        if self._lock_path is not None:
            log.info("this API process (pid %d) runs the executor and the relay", os.getpid())
        return True

    def _lock(self, path: Path) -> bool:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # for a person looking: who holds it
        self._lock_fd = fd
        return True

    def _listen(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            sock.bind(self._address)
        except OSError as exc:  # a holder that is still exiting: the workers poll meanwhile
            log.warning("executor wake socket not bound (%s): others' jobs wait a poll", exc)
            sock.close()
            return
        sock.settimeout(0.5)

        def forward() -> None:
            with sock:
                while not self._stopped.is_set():
                    try:
                        sock.recv(16)
                    except TimeoutError:
                        continue
                    except OSError:
                        return
                    if self.executor is not None:
                        self.executor.wake()

        self._listener = threading.Thread(target=forward, name="executor-wake", daemon=True)
        self._listener.start()

    def wake(self) -> None:
        """A job was queued on the embedded backend: nudge an idle job process, wherever."""
        executor = self.executor
        if executor is not None:
            executor.wake()
            return
        if self._lock_path is None:
            return
        with contextlib.suppress(OSError):  # no holder right now, or its queue is full
            if self._sender is None:
                self._sender = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
                )
            self._sender.sendto(b".", self._address)

    def supervise(self) -> int:
        """Each relay tick: the holder replaces dead job processes, the others try the seat."""
        if self.executor is not None:
            return self.executor.supervise()
        if not self._held:
            self.take()
        return 0

    @property
    def alive(self) -> int:
        """Live job processes, for `/health/ready`. A process without the seat cannot count
        the holder's: LOCAL_WORKERS while the seat is held, 0 while nobody holds it."""
        with self._mutex:
            if self._held:
                return self.executor.alive if self.executor is not None else 0
            if self._lock_path is None or not self._lock(self._lock_path):
                return self.settings.LOCAL_WORKERS
            self._release()  # free: a relay tick of some process takes it
            return 0

    def _release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # drops the flock
            self._lock_fd = None

    def stop(self) -> None:
        """Stop the executor first, then free the seat: never two executors' processes."""
        self._stopped.set()
        if self.executor is not None:
            self.executor.stop()
            self.executor = None
        if self._listener is not None:
            self._listener.join(2)
            self._listener = None
        if self._sender is not None:
            self._sender.close()
            self._sender = None
        with self._mutex:
            self._release()
            self._held = False


def die_with_parent(parent_pid: int, signum: int = signal.SIGKILL) -> None:
    """Get `signum` when the parent dies, even by SIGKILL: a job process must not outlive the
    server (it would hold jobs nobody watches), nor an API worker its `reportctl serve`
    (SIGTERM: it stops its executor on the way out)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signum)  # PR_SET_PDEATHSIG
    except OSError:
        pass

    def watch() -> None:  # the parent died before prctl, or prctl is unavailable
        while True:
            if os.getppid() != parent_pid:
                if signum == signal.SIGKILL:
                    os._exit(1)
                os.kill(os.getpid(), signum)
                return
            threading.Event().wait(1.0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


class _SoftTimeLimit:
    """SIGALRM-based soft limit: raises JobTimedOut inside the running handler."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        from app.jobs.errors import JobTimedOut

        def on_alarm(_signum: int, _frame: Any) -> None:
            raise JobTimedOut(f"soft time limit of {self.seconds} s reached")

        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _worker_main(settings: Settings, wake: Queue[None], stop: Event, parent_pid: int) -> None:
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the server, which stops us
    set_settings(settings)
    from app.core.logging import configure_logging

    configure_logging(settings)
    from app.db.session import session_scope
    from app.jobs.runner import run_job
    from app.jobs.store import sweeps

    while not stop.is_set():
        try:
            with session_scope() as session:
                candidates = sweeps.runnable_local(session=session, limit=8)
        except Exception:
            log.warning("local worker could not read the queue", exc_info=True)
            candidates = []
        ran = False
        for job_id in candidates:
            if stop.is_set():
                break
            try:
                with _SoftTimeLimit(settings.JOB_SOFT_TIME_LIMIT_SECONDS):
                    outcome = run_job(job_id, settings=settings)
            except Exception:
                # run_job records job failures itself; this is a bug or a DB outage. Keep the
                # worker alive: the reaper hands the job back when its heartbeat goes stale.
                log.exception("local worker: run_job(%s) raised", job_id)
                ran = True
                break
            if outcome.status != "skipped":
                ran = True
                break
        if ran:
            continue
        with contextlib.suppress(queue.Empty, OSError, EOFError):
            wake.get(timeout=settings.LOCAL_POLL_SECONDS)
