"""GET /metrics: Prometheus text exposition, behind `METRICS_TOKEN` when it is set.

With `METRICS_TOKEN` set, a scrape must send `Authorization: Bearer <METRICS_TOKEN>`
(Prometheus: `authorization: {credentials: ...}`), compared in constant time; it is a
separate secret from users' API tokens, so a scraper holds no power over jobs. Unset, the
endpoint stays open, as it was: turning it off by default would silently break every
existing scrape, and the numbers (counts, durations, queue lengths) carry no job data. The
README says to set it or keep the API on a private interface; in prod an open scrape is
logged once as a warning.

Everything this instance (the API process and its embedded workers) recorded, plus queue
lengths read from each backend at scrape time. Reading them is bounded: at most once per
`_QUEUE_TTL` seconds, each backend under a timeout, none whose circuit breaker is open, and a
backend still answering a previous read is not asked again, so a dead broker cannot make the
scrape slow or pile up threads.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select

from app.core import metrics
from app.core.config import Settings, get_settings
from app.core.queues import QUEUES
from app.db.session import session_scope
from app.jobs.dispatch import Dispatcher, get_dispatcher
from app.jobs.models import ReportJob
from app.jobs.states import JobStatus

log = logging.getLogger(__name__)
router = APIRouter(tags=["monitoring"])

_QUEUE_TTL = 5.0
_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="queue-length")
_lock = threading.Lock()
_last_refresh = 0.0
_in_flight: dict[str, Future[dict[str, int]]] = {}


def _local_queue_lengths() -> dict[str, int]:
    """The embedded executor's queue is the database: jobs queued on it, per queue."""
    with session_scope() as session:
        rows = session.execute(
            select(ReportJob.queue, func.count())
            .where(ReportJob.backend == "local", ReportJob.status == JobStatus.QUEUED)
            .group_by(ReportJob.queue)
        ).all()
    lengths = dict.fromkeys(QUEUES, 0)
    lengths.update({queue: int(count) for queue, count in rows})
    return lengths


def refresh_queue_lengths(dispatcher: Dispatcher, *, timeout: float | None = None) -> None:
    """Read every usable backend's queue lengths into the gauge (rate-limited, bounded)."""
    global _last_refresh
    with _lock:
        now = time.monotonic()
        if now - _last_refresh < _QUEUE_TTL:
            return
        _last_refresh = now
        started: dict[str, Future[dict[str, int]]] = {}
        for name, backend in dispatcher.backends.items():
            previous = _in_flight.get(name)
            if previous is not None and not previous.done():
                continue
            breaker = dispatcher.breakers.get(name)
            if breaker is not None and breaker.is_open:
                continue
            reader = _local_queue_lengths if name == "local" else backend.queue_lengths
            started[name] = _in_flight[name] = _pool.submit(reader)
    limit = timeout if timeout is not None else dispatcher.settings.BROKER_PUBLISH_TIMEOUT_SECONDS
    deadline = time.monotonic() + max(limit, 0.1)
    for name, future in started.items():
        try:
            lengths = future.result(timeout=max(deadline - time.monotonic(), 0.0))
        except FutureTimeout:
            log.debug("queue lengths of %s: no answer in time", name)
            continue
        except Exception as exc:
            log.debug("queue lengths of %s failed: %s", name, exc)
            continue
        for queue, length in lengths.items():
            metrics.set_queue_length(queue, int(length), backend=name)


_warned_open = False


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()  # equal lengths: no length leak


def scrape_refusal(settings: Settings, authorization: str | None) -> Response | None:
    """None if this scrape may read the metrics, else the 401 to answer."""
    global _warned_open
    expected = settings.METRICS_TOKEN.get_secret_value()
    if not expected:
        if settings.ENVIRONMENT == "prod" and not _warned_open:
            _warned_open = True
            log.warning("/metrics is open: set METRICS_TOKEN or bind the API privately")
        return None
    scheme, _, credentials = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(
        _digest(credentials.strip()), _digest(expected)
    ):
        return None
    return JSONResponse(
        status_code=401,
        content={"detail": "Metrics need 'Authorization: Bearer <METRICS_TOKEN>'."},
        headers={"WWW-Authenticate": "Bearer"},
    )


@router.get("/metrics", include_in_schema=False)
def prometheus_metrics(request: Request) -> Response:
    refusal = scrape_refusal(get_settings(), request.headers.get("authorization"))
    if refusal is not None:
        return refusal
    try:
        refresh_queue_lengths(get_dispatcher())
    except Exception:  # metrics must render even when a backend misbehaves
        log.debug("queue length refresh failed", exc_info=True)
    body, content_type = metrics.render_latest()
    return Response(content=body, media_type=content_type)
