"""Keep one child process running: restart it with a capped backoff, stop it on request.

`celery_manager.py worker` runs its Celery worker under this, so a worker that exits on its
own (a crash, an unrecoverable error, an OOM kill of the main process, a remote `shutdown`)
does not leave its queues without a consumer until a person notices. Only the supervisor's
own SIGTERM or SIGINT stops it: it asks the child for a warm shutdown, waits for it however
long the running tasks take (whoever sent the signal decides when to SIGKILL), and exits 0.

The child stays in the supervisor's process group, so a signal to the group (Ctrl+C in a
terminal, `kill -- -PGID`) reaches both, and SIGKILL to the group kills the whole tree. Run as
PID 1 in a container, the supervisor also reaps orphans left by a child killed outright.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import FrameType

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@dataclass
class Backoff:
    """Delay before restart n: `initial * 2**n`, at most `maximum`; back to `initial` once a
    child ran `stable_after` seconds (a worker that crashes once a day restarts at once)."""

    initial: float = 1.0
    maximum: float = 30.0
    stable_after: float = 60.0
    _next: float | None = None

    def after_run(self, ran_for: float) -> float:
        """The delay before the next start, for a child that ran `ran_for` seconds."""
        if self._next is None or ran_for >= self.stable_after:
            self._next = self.initial
        delay = self._next
        self._next = min(delay * 2, self.maximum)
        return delay


class Supervisor:
    """Run `argv` until asked to stop; `run()` returns the supervisor's exit code."""

    def __init__(self, argv: Sequence[str], backoff: Backoff | None = None, name: str = "") -> None:
        self.argv = list(argv)
        self.backoff = backoff or Backoff()
        self.name = name or os.path.basename(self.argv[0])
        self.restarts = 0
        self._child: subprocess.Popen[bytes] | None = None
        self._stop_signals = 0

    # -- signals -------------------------------------------------------------------------------

    def _on_stop_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._stop_signals += 1
        child = self._child
        if child is None or child.returncode is not None:
            return
        # SIGINT is forwarded as SIGTERM: Celery takes a second SIGINT for a cold shutdown, and
        # a terminal's Ctrl+C already reached the child through the process group. A second
        # stop signal to the supervisor asks for the cold shutdown (running tasks killed).
        forward = signal.SIGTERM if self._stop_signals == 1 else signal.SIGQUIT
        log.info(
            "supervisor: %s received, %s to %s (pid %d)",
            signal.Signals(signum).name,
            forward.name,
            self.name,
            child.pid,
        )
        with contextlib.suppress(ProcessLookupError):  # it exited a moment ago
            os.kill(child.pid, forward)

    @property
    def stopping(self) -> bool:
        return self._stop_signals > 0

    # -- the loop ------------------------------------------------------------------------------

    def _wait_child(self, child: subprocess.Popen[bytes]) -> int:
        """Block until `child` exits (reaping any orphan re-parented to us meanwhile)."""
        while True:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:  # already reaped elsewhere: ask Popen
                return child.wait()
            if pid == child.pid:
                child.returncode = os.waitstatus_to_exitcode(status)
                return child.returncode

    def _sleep(self, seconds: float) -> None:
        """Sleep, but wake up as soon as a stop signal arrives."""
        deadline = time.monotonic() + seconds
        while not self.stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_stop_signal) for sig in STOP_SIGNALS}
        try:
            while not self.stopping:
                started = time.monotonic()
                self._child = subprocess.Popen(self.argv)
                log.info("supervisor: started %s (pid %d)", self.name, self._child.pid)
                if self.stopping:  # the signal came while the child was being created
                    os.kill(self._child.pid, signal.SIGTERM)
                code = self._wait_child(self._child)
                ran_for = time.monotonic() - started
                if self.stopping:
                    log.info("supervisor: %s stopped (exit code %d)", self.name, code)
                    break
                delay = self.backoff.after_run(ran_for)
                self.restarts += 1
                log.warning(
                    "supervisor: %s (pid %d) exited with code %d after %.1f s; restart %d in %g s",
                    self.name,
                    self._child.pid,
                    code,
                    ran_for,
                    self.restarts,
                    delay,
                )
                self._sleep(delay)
            return 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
