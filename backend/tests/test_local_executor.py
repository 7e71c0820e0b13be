"""The embedded executor replaces dead workers, and backs off when they keep dying at once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.config import set_settings
from app.jobs import local_executor
from app.jobs.local_executor import LocalExecutor
from tests.conftest import fresh_database, make_settings


@pytest.fixture
def executor(tmp_path: Path) -> Iterator[LocalExecutor]:
    database = fresh_database("sqlite", tmp_path)
    settings = make_settings(tmp_path, database.url, LOCAL_WORKERS=1)
    set_settings(settings)
    executor = LocalExecutor(settings)
    executor.start()
    try:
        yield executor
    finally:
        executor.stop()
        set_settings(None)


def _kill_worker(executor: LocalExecutor) -> int:
    (proc,) = executor._procs
    assert proc.pid is not None and proc.is_alive()
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(5)
    return proc.pid


def _supervise_until_restarted(executor: LocalExecutor, timeout: float) -> float:
    """Seconds from the first supervise pass that noticed the death to the restart."""
    first = time.monotonic()
    while executor.supervise() == 0:
        assert time.monotonic() - first < timeout, "the dead worker was never replaced"
        time.sleep(0.05)
    return time.monotonic() - first


def test_a_worker_that_keeps_dying_at_once_is_restarted_later_and_later(
    executor: LocalExecutor,
) -> None:
    waits = []
    for _ in range(3):
        dead = _kill_worker(executor)
        waits.append(_supervise_until_restarted(executor, timeout=10))
        (proc,) = executor._procs
        assert proc.pid != dead and proc.is_alive()
    # Never before 1 s, 2 s, 4 s: a crash loop costs a spawn every few seconds, not one per
    # relay pass (the upper bound is only the helper's timeout: a slow machine may be late).
    assert [wait >= floor for wait, floor in zip(waits, (1.0, 2.0, 4.0), strict=True)] == [
        True
    ] * 3, waits
    assert executor.alive == 1


def test_a_worker_that_had_been_healthy_is_replaced_at_once(
    executor: LocalExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_executor, "HEALTHY_AFTER_SECONDS", 0.0)  # it lived long enough
    for _ in range(2):
        _kill_worker(executor)
        assert executor.supervise() == 1
