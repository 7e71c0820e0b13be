"""The embedded executor: worker *processes* that take jobs from the database.

Processes, not threads, so a CPU-bound report never slows the API. The database is the queue
(claimed by compare-and-set), so a killed server loses nothing: on the next start the relay
hands back whatever was left `queued` or `started`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
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


def _die_with_parent(parent_pid: int) -> None:
    """A worker must not outlive a SIGKILLed server (it would hold jobs nobody watches)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
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
    _die_with_parent(parent_pid)
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
