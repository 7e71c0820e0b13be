"""Logging set-up: readable lines in dev and test, JSON lines in prod.

Every line written while a job runs carries its `job_id` (plus `job_type` and `attempt`), so
one grep finds a job's whole story across the API, the workers and their children. The job
is bound by `job_log_context` in a context variable; a filter on the handler copies it onto
each record. Threads started by a job (heartbeat, builder helpers) do not inherit context
variables, so while exactly one job runs in the process (a Celery prefork child, a local
worker), lines from any thread get that job too.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.core.config import Settings

JOB_FIELDS = ("job_id", "job_type", "attempt")


@dataclass(frozen=True)
class JobLogContext:
    job_id: str
    job_type: str | None = None
    attempt: int | None = None


_current: ContextVar[JobLogContext | None] = ContextVar("job_log_context", default=None)
_active: list[JobLogContext] = []
_active_lock = threading.Lock()


@contextmanager
def job_log_context(
    job_id: str, job_type: str | None = None, attempt: int | None = None
) -> Iterator[JobLogContext]:
    """Tag every log line written inside the block (and, alone in its process, its threads)."""
    ctx = JobLogContext(job_id=str(job_id), job_type=job_type, attempt=attempt)
    token = _current.set(ctx)
    with _active_lock:
        _active.append(ctx)
    try:
        yield ctx
    finally:
        with _active_lock:
            _active.remove(ctx)
        _current.reset(token)


def current_job() -> JobLogContext | None:
    """The job the calling code works for, if any."""
    ctx = _current.get()
    if ctx is not None:
        return ctx
    with _active_lock:
        return _active[0] if len(_active) == 1 else None


class JobContextFilter(logging.Filter):
    """Copy the current job onto the record (explicit `extra={"job_id": ...}` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = current_job()
        for name in JOB_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, getattr(ctx, name) if ctx is not None else None)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers; job fields only when there is a job."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for key in (*JOB_FIELDS, "queue"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


class DevFormatter(logging.Formatter):
    """The classic line, with `[job <id> <type>#<attempt>]` when a job wrote it."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        job_id = getattr(record, "job_id", None)
        if job_id is None:
            return line
        tag = f"job {job_id}"
        job_type = getattr(record, "job_type", None)
        attempt = getattr(record, "attempt", None)
        if job_type:
            tag += f" {job_type}"
        if attempt is not None:
            tag += f"#{attempt}"
        head, sep, message = line.partition(": ")
        return f"{head} [{tag}]{sep}{message}"


def make_handler(settings: Settings, stream: Any = None) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if settings.ENVIRONMENT == "prod" else DevFormatter())
    handler.addFilter(JobContextFilter())
    return handler


def configure_logging(settings: Settings) -> None:
    root = logging.getLogger()
    root.handlers[:] = [make_handler(settings)]
    root.setLevel(settings.LOG_LEVEL)
    logging.getLogger("httpx").setLevel(logging.WARNING)
