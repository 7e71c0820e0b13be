"""Health checks of everything a job needs: database, broker, result store, workers, disk.

Each check is bounded by a timeout (a hung connection must not hang the probe that asks about
it) and returns a `CheckResult` naming what failed and why. `run_health_checks` runs them all
for the periodic task; `/health/ready` uses the database and backend checks.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, text

from app.core import metrics
from app.core.config import Settings
from app.storage import get_store

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 2.0
DEFAULT_MIN_FREE_BYTES = 1024**3
DEFAULT_MIN_FREE_PERCENT = 5.0

# Probes run here so a caller can stop waiting; a hung probe holds one thread, not the caller.
_pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="health")


class CheckTimeout(TimeoutError):
    pass


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str = "ok"
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class HealthReport:
    ok: bool
    checks: list[CheckResult]

    @property
    def failing(self) -> list[str]:
        return [check.name for check in self.checks if not check.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "unhealthy",
            "failing": self.failing,
            "checks": {check.name: asdict(check) for check in self.checks},
        }


def bounded(fn: Callable[[], T], timeout: float) -> T:
    """`fn()` or CheckTimeout after `timeout` seconds (the call itself is left to finish)."""
    future = _pool.submit(fn)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        raise CheckTimeout(f"no answer within {timeout:g} s") from None


def _run(
    name: str, probe: Callable[[], tuple[bool, str, dict[str, Any]]], timeout: float
) -> CheckResult:
    started = time.monotonic()
    try:
        ok, detail, data = bounded(probe, timeout)
    except Exception as exc:
        ok, detail, data = False, _describe(exc), {}
    return CheckResult(
        name=name, ok=ok, detail=detail, seconds=time.monotonic() - started, data=data
    )


def _describe(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


# -- single checks ---------------------------------------------------------------------------


def check_database(
    *, engine: Engine, timeout: float = DEFAULT_TIMEOUT_SECONDS, name: str = "database"
) -> CheckResult:
    def probe() -> tuple[bool, str, dict[str, Any]]:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True, "ok", {"dialect": engine.dialect.name}

    return _run(name, probe, timeout)


def _redis_ping(url: str, timeout: float) -> tuple[bool, str, dict[str, Any]]:
    from app.jobs.backends import redis_util

    ok = redis_util.ping(url, timeout)
    return ok, "ok" if ok else "no PONG", {}


def check_broker(
    *, url: str, timeout: float = DEFAULT_TIMEOUT_SECONDS, name: str = "broker"
) -> CheckResult:
    """Ping the broker: Redis directly, anything else through a kombu connection."""
    if not url:
        return CheckResult(name=name, ok=True, detail="not configured")

    def probe() -> tuple[bool, str, dict[str, Any]]:
        if url.startswith(("redis://", "rediss://")):
            return _redis_ping(url, timeout)
        from kombu.connection import Connection

        with Connection(url, connect_timeout=timeout) as conn:
            conn.ensure_connection(max_retries=1, timeout=timeout)
        return True, "ok", {}

    return _run(name, probe, timeout)


def check_result_backend(
    *, url: str, timeout: float = DEFAULT_TIMEOUT_SECONDS, name: str = "result_backend"
) -> CheckResult:
    """Ping Celery's result store (Redis or a `db+` SQL URL)."""
    if not url:
        return CheckResult(name=name, ok=True, detail="not configured")

    def probe() -> tuple[bool, str, dict[str, Any]]:
        if url.startswith(("redis://", "rediss://")):
            return _redis_ping(url, timeout)
        if url.startswith("db+"):
            from sqlalchemy import create_engine

            engine = create_engine(url.removeprefix("db+"))
            try:
                with engine.connect() as conn:
                    conn.execute(text("SELECT 1"))
            finally:
                engine.dispose()
            return True, "ok", {}
        return True, f"not checked ({url.split(':', 1)[0]} backend)", {}

    return _run(name, probe, timeout)


def check_workers(
    *, celery_app: Any, queues: Iterable[str], timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> list[CheckResult]:
    """One result per queue: the workers that answered a broadcast and consume it.

    A broadcast waits its whole timeout for replies (it cannot know how many workers exist),
    so keep it short; a worker busy with a long job still answers (its main process does).
    """
    queues = list(queues)
    started = time.monotonic()
    try:
        replies = bounded(
            lambda: celery_app.control.inspect(timeout=timeout).active_queues() or {},
            timeout + 3.0,
        )
        error = None
    except Exception as exc:
        replies, error = {}, _describe(exc)
    seconds = time.monotonic() - started
    by_queue: dict[str, list[str]] = {queue: [] for queue in queues}
    for worker, consumed in replies.items():
        for entry in consumed or []:
            queue = entry.get("name") if isinstance(entry, dict) else None
            if queue in by_queue:
                by_queue[queue].append(worker)
    results = []
    for queue, workers in by_queue.items():
        if workers:
            detail = f"{len(workers)} worker(s)"
        else:
            detail = error or f"no worker answered for queue {queue!r}"
        results.append(
            CheckResult(
                name=f"workers:{queue}",
                ok=bool(workers),
                detail=detail,
                seconds=seconds,
                data={"workers": sorted(workers)},
            )
        )
    return results


def check_disk(
    *,
    path: Path,
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
    min_free_percent: float = DEFAULT_MIN_FREE_PERCENT,
    name: str = "disk",
) -> CheckResult:
    """Free space under `path`: below either threshold, artifacts will soon fail to write."""
    started = time.monotonic()
    try:
        target = Path(path)
        while not target.exists() and target != target.parent:
            target = target.parent  # the storage root may not exist before the first job
        usage = shutil.disk_usage(target)
    except OSError as exc:
        return CheckResult(name=name, ok=False, detail=_describe(exc))
    free_percent = 100.0 * usage.free / usage.total if usage.total else 0.0
    data = {
        "path": str(path),
        "total_bytes": usage.total,
        "free_bytes": usage.free,
        "free_percent": round(free_percent, 2),
    }
    ok = usage.free >= min_free_bytes and free_percent >= min_free_percent
    detail = (
        "ok"
        if ok
        else (
            f"only {usage.free / 1024**3:.2f} GiB ({free_percent:.1f}%) free under {path}; "
            f"need {min_free_bytes / 1024**3:.2f} GiB and {min_free_percent:g}%"
        )
    )
    return CheckResult(
        name=name, ok=ok, detail=detail, seconds=time.monotonic() - started, data=data
    )


def check_storage(
    *, settings: Settings, timeout: float = DEFAULT_TIMEOUT_SECONDS, name: str = "storage"
) -> CheckResult:
    """A remote object store answers (S3: `head_bucket`); what `STORAGE_URL` names."""

    def probe() -> tuple[bool, str, dict[str, Any]]:
        where = get_store(settings).ping()
        return True, "ok", {"url": where}

    return _run(name, probe, timeout)


def check_backend(*, backend: Any, timeout: float = DEFAULT_TIMEOUT_SECONDS) -> CheckResult:
    """A dispatcher backend's own bounded ping (`Backend.ping`)."""
    name = str(getattr(backend, "name", "backend"))

    def probe() -> tuple[bool, str, dict[str, Any]]:
        ok = bool(backend.ping())
        return ok, "ok" if ok else "ping failed", {}

    return _run(name, probe, timeout)


# -- all together ----------------------------------------------------------------------------


def run_health_checks(
    *,
    settings: Settings,
    celery_app: Any = None,
    engine: Engine | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    queues: Iterable[str] | None = None,
    min_free_bytes: int | None = None,
    min_free_percent: float | None = None,
) -> HealthReport:
    """Every check, with gauges `report_health_check_up{check}` updated and failures logged.

    Workers are checked only when a Celery app is given and a broker is configured (embedded
    mode has no workers to ask). Thresholds default to the settings DISK_MIN_FREE_BYTES /
    DISK_MIN_FREE_PERCENT when they exist, else 1 GiB and 5%.
    """
    from app.core.queues import QUEUES
    from app.db.session import get_engine

    checks = [
        check_database(engine=engine or get_engine(settings.DATABASE_URL), timeout=timeout),
        check_broker(url=settings.CELERY_BROKER_URL, timeout=timeout),
        check_result_backend(url=settings.CELERY_RESULT_BACKEND, timeout=timeout),
    ]
    if settings.RQ_REDIS_URL:
        checks.append(check_broker(url=settings.RQ_REDIS_URL, timeout=timeout, name="rq_redis"))
    if celery_app is not None and settings.CELERY_BROKER_URL and checks[1].ok:
        checks += check_workers(celery_app=celery_app, queues=queues or QUEUES, timeout=timeout)
    min_bytes = int(
        _setting(settings, "DISK_MIN_FREE_BYTES", min_free_bytes, DEFAULT_MIN_FREE_BYTES)
    )
    min_percent = float(
        _setting(settings, "DISK_MIN_FREE_PERCENT", min_free_percent, DEFAULT_MIN_FREE_PERCENT)
    )
    local_root = get_store(settings).local_root
    if local_root is None:
        # A remote store has no disk of ours to fill: ask it to answer instead. Workers still
        # stage and build files on their own scratch disk.
        checks.append(check_storage(settings=settings, timeout=timeout))
        disk = check_disk(
            path=settings.scratch_dir,
            min_free_bytes=min_bytes,
            min_free_percent=min_percent,
            name="scratch_disk",
        )
    else:
        disk = check_disk(path=local_root, min_free_bytes=min_bytes, min_free_percent=min_percent)
    checks.append(disk)
    report = HealthReport(ok=all(check.ok for check in checks), checks=checks)
    for check in checks:
        metrics.set_health(check.name, check.ok)
    if not report.ok:
        log.warning(
            "health check failing: %s",
            "; ".join(f"{check.name}: {check.detail}" for check in checks if not check.ok),
        )
    return report


def _setting(settings: Settings, name: str, given: float | None, default: float) -> float:
    if given is not None:
        return given
    value = getattr(settings, name, None)
    return default if value is None else float(value)
