"""Prometheus metrics that stay right across processes.

Jobs run in other processes than the one that serves `/metrics` (Celery prefork children, the
embedded executor's spawned workers), so every process writes its samples to files in a
shared directory (prometheus_client's multiprocess mode) and the scraped process merges them.

One directory per *instance* (an API process or a Celery worker's main process, with all the
children it starts): `<base>/<hostname>-<pid>`, where base is `PROMETHEUS_MULTIPROC_DIR` or
`<storage root>/prometheus`. So an API and a worker that share a storage root never mix (or
wipe) each other's files, and each exposes exactly the work done under it; Prometheus sums
the instances. The owner calls `setup_multiprocess` before it starts children; children
inherit the directory through the environment (a spawned child reads it when this module is
imported, a forked one already has it).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import shutil
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client import multiprocess as _mp

from app.core.config import Settings

log = logging.getLogger(__name__)

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
_OWNER_FILE = ".owner"
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")

DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1200, 1800)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)

FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class _Metrics:
    jobs_total: Counter
    duration: Histogram
    active: Gauge
    retries: Counter
    wait: Histogram
    submitted: Counter
    queue_length: Gauge
    health: Gauge
    cpu_percent: Gauge
    memory: Gauge
    disk: Gauge


def _build(registry: CollectorRegistry | None) -> _Metrics:
    """The metric objects. Rebuilt when the value class changes (see `setup_multiprocess`)."""
    r = registry
    return _Metrics(
        jobs_total=Counter(
            "report_jobs_total",
            "Jobs that reached a final status (completed, failed, cancelled).",
            ["job_type", "status", "queue"],
            registry=r,
        ),
        duration=Histogram(
            "report_jobs_duration_seconds",
            "Run time of a job's final attempt, from start to final status.",
            ["job_type", "queue"],
            buckets=DURATION_BUCKETS,
            registry=r,
        ),
        active=Gauge(
            "report_jobs_active",
            "Jobs running right now.",
            ["job_type", "queue"],
            multiprocess_mode="livesum",
            registry=r,
        ),
        retries=Counter(
            "report_jobs_retries_total",
            "Attempts that failed transiently and were scheduled again.",
            ["job_type", "queue"],
            registry=r,
        ),
        wait=Histogram(
            "report_jobs_wait_seconds",
            "Time from queued to started (first attempt).",
            ["job_type", "queue"],
            buckets=WAIT_BUCKETS,
            registry=r,
        ),
        submitted=Counter(
            "report_jobs_submitted_total",
            "Jobs accepted by the API: status queued (a backend took it) or pending (outbox).",
            ["job_type", "queue", "status", "backend"],
            registry=r,
        ),
        queue_length=Gauge(
            "report_jobs_queue_length",
            "Messages waiting per queue and backend, read at scrape time.",
            ["queue", "backend"],
            multiprocess_mode="mostrecent",
            registry=r,
        ),
        health=Gauge(
            "report_health_check_up",
            "1 if the last health check of this component passed, else 0.",
            ["check"],
            multiprocess_mode="mostrecent",
            registry=r,
        ),
        cpu_percent=Gauge(
            "system_cpu_percent",
            "Host CPU utilisation (percent, all cores).",
            multiprocess_mode="mostrecent",
            registry=r,
        ),
        memory=Gauge(
            "system_memory_bytes",
            "Host memory by kind (total, available, used).",
            ["kind"],
            multiprocess_mode="mostrecent",
            registry=r,
        ),
        disk=Gauge(
            "system_disk_bytes",
            "Disk space of a path by kind (total, used, free).",
            ["path", "kind"],
            multiprocess_mode="mostrecent",
            registry=r,
        ),
    )


def _multiprocess_env() -> str | None:
    return os.environ.get(ENV_VAR) or None


def _use_multiprocess_values() -> None:
    """Make new metric values file-backed, whatever imported prometheus_client first."""
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.MultiProcessValue()


_lock = threading.RLock()
_registry: CollectorRegistry | None = None
_instance_dir: Path | None = None
_owner_pid: int | None = None

if _multiprocess_env():
    # A child of an instance (spawned local worker) or a process started with the variable.
    Path(_multiprocess_env() or ".").mkdir(parents=True, exist_ok=True)
    _use_multiprocess_values()
    _m = _build(None)
else:
    _registry = CollectorRegistry(auto_describe=True)
    _m = _build(_registry)


def multiprocess_dir() -> Path | None:
    """The directory this process writes its samples to (None: single-process mode)."""
    env = _multiprocess_env()
    return Path(env) if env else None


def _base_dir(settings: Settings) -> Path:
    base = Path(settings.PROMETHEUS_MULTIPROC_DIR or settings.storage_root / "prometheus")
    if (base / _OWNER_FILE).exists():
        # The variable was inherited from another instance (a worker started from the API's
        # environment): use its parent, never the other instance's own directory.
        base = base.parent
    return base


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) still answers kill(0); it writes nothing any more.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _remove_dead_siblings(base: Path, host: str) -> None:
    """Instance directories of processes on this host that are gone (crash, SIGKILL)."""
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            name, _, pid = entry.name.rpartition("-")
            if name != host or not pid.isdigit() or not entry.is_dir():
                continue
            if int(pid) != os.getpid() and not _pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)


def setup_multiprocess(settings: Settings) -> Path:
    """Become an instance: a fresh directory for this process and the children it starts.

    Call it in the owner process before it starts any child (API lifespan, Celery
    `worker_init`). It sets PROMETHEUS_MULTIPROC_DIR in os.environ so children inherit it.
    Idempotent for one directory; called again with another base (tests that build several
    apps in one process), it switches to a new directory and new metric objects, since the
    old ones keep their files open.
    """
    global _m, _registry, _instance_dir, _owner_pid
    with _lock:
        host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())
        base = _base_dir(settings)
        if (
            _instance_dir is not None
            and _owner_pid == os.getpid()
            and _instance_dir.parent.resolve() == base.resolve()
        ):
            return _instance_dir
        instance = base / f"{host}-{os.getpid()}"
        # A previous process with our pid (a restarted container is often pid 1) left files
        # that would be added to ours: start empty.
        shutil.rmtree(instance, ignore_errors=True)
        instance.mkdir(parents=True, exist_ok=True)
        (instance / _OWNER_FILE).write_text(f"{os.getpid()}\n")
        _remove_dead_siblings(base, host)
        os.environ[ENV_VAR] = str(instance)
        # A new value class: a fresh per-process file cache pointing at the new directory.
        values.ValueClass = values.MultiProcessValue()
        _m = _build(None)
        _registry = None
        _instance_dir = instance
        _owner_pid = os.getpid()
        log.debug("prometheus multiprocess directory: %s", instance)
        return instance


def teardown_multiprocess() -> None:
    """Remove this instance's directory when its owner exits (children have stopped)."""
    global _instance_dir, _owner_pid
    with _lock:
        if _instance_dir is not None and _owner_pid == os.getpid():
            shutil.rmtree(_instance_dir, ignore_errors=True)
            _instance_dir = None
            _owner_pid = None


def mark_process_dead(pid: int) -> None:
    """A child exited: drop its `live*` gauges (its counters and histograms must stay)."""
    path = multiprocess_dir()
    if path is not None and path.is_dir():
        with contextlib.suppress(OSError):
            _mp.mark_process_dead(pid, str(path))


def _prune_dead(path: Path) -> None:
    """Children killed without notice (SIGKILL, OOM) would count as active forever."""
    with contextlib.suppress(OSError):
        for entry in path.iterdir():
            match = _LIVE_FILE.match(entry.name)
            if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
                entry.unlink(missing_ok=True)


def registry() -> CollectorRegistry:
    """What to expose: the merged files in multiprocess mode, else this process's metrics."""
    path = multiprocess_dir()
    if path is None:
        assert _registry is not None
        return _registry
    path.mkdir(parents=True, exist_ok=True)
    _prune_dead(path)
    merged = CollectorRegistry()
    _mp.MultiProcessCollector(merged, path=str(path))
    return merged


def render_latest() -> tuple[bytes, str]:
    """The text exposition and its content type, for `/metrics` and the worker endpoint."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST


# -- recording ---------------------------------------------------------------------------------

F = TypeVar("F", bound=Callable[..., None])


def _never_raise(fn: F) -> F:
    """Metrics must never fail a job or a request: a recording error is logged and dropped."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            log.warning("metrics: %s failed", fn.__name__, exc_info=True)

    return wrapper  # type: ignore[return-value]


@_never_raise
def job_submitted(job_type: str, queue: str, status: str, backend: str | None = None) -> None:
    """The API accepted a job: `queued` on `backend`, or `pending` in the outbox."""
    _m.submitted.labels(job_type, queue, status, backend or "none").inc()


@_never_raise
def job_started(job_type: str, queue: str, wait_seconds: float | None) -> None:
    """An attempt claimed its job. `wait_seconds`: queued -> started, if meaningful."""
    _m.active.labels(job_type, queue).inc()
    if wait_seconds is not None and wait_seconds >= 0:
        _m.wait.labels(job_type, queue).observe(wait_seconds)


@_never_raise
def job_finished(job_type: str, queue: str, status: str, duration_seconds: float) -> None:
    """An attempt ended the job: completed, failed or cancelled (one count per job)."""
    if status not in FINAL_STATUSES:
        raise ValueError(f"not a final status: {status!r} (retries go to job_retried)")
    _m.active.labels(job_type, queue).dec()
    _m.jobs_total.labels(job_type, status, queue).inc()
    _m.duration.labels(job_type, queue).observe(max(duration_seconds, 0.0))


@_never_raise
def job_retried(job_type: str, queue: str) -> None:
    """An attempt failed transiently and the job will run again: not a final outcome."""
    _m.active.labels(job_type, queue).dec()
    _m.retries.labels(job_type, queue).inc()


@_never_raise
def job_abandoned(job_type: str, queue: str) -> None:
    """An attempt ended without an outcome (an unexpected error escaped the runner)."""
    _m.active.labels(job_type, queue).dec()


@_never_raise
def set_queue_length(queue: str, length: int, backend: str = "celery") -> None:
    _m.queue_length.labels(queue, backend).set(length)


@_never_raise
def set_health(check: str, ok: bool) -> None:
    _m.health.labels(check).set(1 if ok else 0)


@_never_raise
def set_system(
    *, cpu_percent: float, memory: dict[str, float], disk: dict[str, dict[str, float]]
) -> None:
    """Host gauges; `disk` maps a path to its total/used/free bytes."""
    _m.cpu_percent.set(cpu_percent)
    for kind, value in memory.items():
        _m.memory.labels(kind).set(value)
    for path, kinds in disk.items():
        for kind, value in kinds.items():
            _m.disk.labels(path, kind).set(value)


# -- exposition from workers -------------------------------------------------------------------

_server: Any = None


def start_worker_metrics_server(port: int, addr: str = "0.0.0.0") -> bool:
    """Serve this instance's merged metrics over HTTP (a Celery worker's main process).

    Start it after the pool has forked (`worker_ready`), so children do not inherit the
    socket. A busy port (two workers on one host with the same setting) is logged, not fatal:
    a worker that runs jobs matters more than its metrics. Port 0 disables it.
    """
    global _server
    if port <= 0:
        return False
    with _lock:
        if _server is not None:
            return True
        from http.server import ThreadingHTTPServer

        from prometheus_client.exposition import MetricsHandler

        class Handler(MetricsHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] not in ("/", "/metrics"):
                    self.send_error(404)
                    return
                self.registry = registry()
                super().do_GET()

            def log_message(self, format: str, *args: Any) -> None:
                return

        try:
            server = ThreadingHTTPServer((addr, port), Handler)
        except OSError as exc:
            log.warning("worker metrics server not started on port %d: %s", port, exc)
            return False
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True)
        thread.start()
        _server = server
        log.info("worker metrics on http://%s:%d/metrics", addr, port)
        return True


def stop_worker_metrics_server() -> None:
    global _server
    with _lock:
        if _server is not None:
            _server.shutdown()
            _server.server_close()
            _server = None


def install_celery_hooks() -> None:
    """Wire a Celery worker: instance dir before the pool forks, endpoint once ready,
    live gauges dropped when a pool child exits. Call once, from the Celery app module."""
    from celery import signals

    from app.core.config import get_settings

    @signals.worker_init.connect(weak=False)
    def _on_worker_init(**_: Any) -> None:
        setup_multiprocess(get_settings())

    @signals.worker_ready.connect(weak=False)
    def _on_worker_ready(**_: Any) -> None:
        start_worker_metrics_server(get_settings().WORKER_METRICS_PORT)

    @signals.worker_process_shutdown.connect(weak=False)
    def _on_child_exit(pid: int | None = None, **_: Any) -> None:
        mark_process_dead(pid or os.getpid())

    @signals.worker_shutdown.connect(weak=False)
    def _on_worker_shutdown(**_: Any) -> None:
        stop_worker_metrics_server()
        teardown_multiprocess()
