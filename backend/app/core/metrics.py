"""The job service's Prometheus metrics: their definitions and the calls that record them.

Callers record through small functions (`metrics.job_started(...)`), never through the metric
objects: those are rebuilt when the process becomes an instance (its samples then go to files
in the multiprocess directory, see `app.core.metrics_multiprocess`), and a recording error
must never fail a job or a request. `registry()` / `render_latest()` give what to expose:
this process's metrics, or in multiprocess mode the merged files of the whole instance.
`initialise(...)` creates every job series at zero when a process starts.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ParamSpec

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from app.core import metrics_multiprocess

log = logging.getLogger(__name__)

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
    superseded: Counter


def _build(registry: CollectorRegistry | None) -> _Metrics:
    """The metric objects; built again when the multiprocess directory changes."""
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
        superseded=Counter(
            "report_jobs_superseded_total",
            "Attempts that lost their job to another attempt (a worker that stopped "
            "heart-beating came back): not a job's final status, never in report_jobs_total.",
            ["job_type", "queue"],
            registry=r,
        ),
    )


_registry: CollectorRegistry | None = None

if metrics_multiprocess.join_inherited():
    # A child of an instance (spawned local worker) or a process started with the variable.
    _m = _build(None)
else:
    _registry = CollectorRegistry(auto_describe=True)
    _m = _build(_registry)


def _use_new_directory() -> None:
    """The process became an instance (or switched directory): file-backed metric objects."""
    global _m, _registry
    _m = _build(None)
    _registry = None


metrics_multiprocess.on_directory_change(_use_new_directory)


def registry() -> CollectorRegistry:
    """What to expose: the merged files in multiprocess mode, else this process's metrics."""
    path = metrics_multiprocess.multiprocess_dir()
    if path is None:
        assert _registry is not None
        return _registry
    return metrics_multiprocess.merged_registry(path)


def render_latest() -> tuple[bytes, str]:
    """The text exposition and its content type, for `/metrics` and the worker endpoint."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def initialise(kinds: Iterable[tuple[str, str]], backends: Iterable[str] = ()) -> None:
    """Create every job metric's series at zero, for each (job type, queue) in `kinds` (and
    each final status; for the submit count, each of `backends`, or none when empty).

    A labelled series exists only once used: without this, `report_jobs_retries_total` is
    missing from a healthy service until its first retry, and rate()/absent() over it break.
    The caller passes the registry's kinds (core knows no job kinds). Call it once the process
    is an instance (after `setup_multiprocess`, which rebuilds the metric objects); in
    multiprocess mode the zeros are this process's file, which the merge adds to the others.
    Gauges read at scrape time (queue lengths, health, host) are left alone: a made-up 0
    there would say "empty" or "down".
    """
    try:
        pairs: list[tuple[str, ...]] = list(kinds)
        submits = [("queued", b) for b in backends]
        submits += [("pending", "none")] if submits else []
        values: dict[tuple[str, ...], list[tuple[str, ...]]] = {
            ("job_type", "queue"): pairs,
            ("job_type", "status", "queue"): [
                (t, s, q) for t, q in pairs for s in sorted(FINAL_STATUSES)
            ],
            ("job_type", "queue", "status", "backend"): [
                (t, q, s, b) for t, q in pairs for s, b in submits
            ],
        }
        for metric in vars(_m).values():
            for labels in values.get(tuple(getattr(metric, "_labelnames", ())), []):
                metric.labels(*labels)
    except Exception:  # never fail a start-up over metrics
        log.warning("metrics: initialise failed", exc_info=True)


# -- recording ---------------------------------------------------------------------------------

P = ParamSpec("P")


def _never_raise(fn: Callable[P, None]) -> Callable[P, None]:
    """Metrics must never fail a job or a request: a recording error is logged and dropped."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            log.warning("metrics: %s failed", fn.__name__, exc_info=True)

    return wrapper


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
def job_superseded(job_type: str, queue: str) -> None:
    """An attempt found its job taken over: the live attempt counts the job's end."""
    _m.active.labels(job_type, queue).dec()
    _m.superseded.labels(job_type, queue).inc()


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
