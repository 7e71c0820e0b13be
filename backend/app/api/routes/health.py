"""Liveness and readiness, without authentication (for load balancers and orchestrators).

`/health/live` only says the process answers (restart me if not). `/health/ready` says jobs
can be accepted *and run* as configured: the database answers `SELECT 1` and the backend
that JOB_BACKEND names (for `auto`: the preferred configured one, Celery then RQ, or the
embedded executor when no broker is configured) answers its ping, each within a timeout.
Otherwise 503, with the failing part named. Falling back to a lesser backend keeps jobs from
being lost, but it is not the configured service, so it is reported as not ready. `features`
lists the optional features (OCR, e-mail, Celery, RQ) and why each is on or off on this host
(`monitoring/features.py`), without affecting the status.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.core.config import get_settings
from app.db.session import get_engine
from app.jobs.dispatch import Dispatcher, get_dispatcher
from app.monitoring.features import optional_features
from app.monitoring.health import CheckResult, check_backend, check_database, check_storage
from app.storage import get_store

router = APIRouter(prefix="/health", tags=["health"])

DB_TIMEOUT_SECONDS = 2.0


class FeatureRead(BaseModel):
    on: bool
    why: str


class CheckRead(BaseModel):
    ok: bool
    detail: str
    seconds: float


class Readiness(BaseModel):
    """The body of /health/ready, 200 or 503 alike; `failing` and `detail` only on a 503."""

    status: Literal["ok", "unavailable"]
    backend: str
    checks: dict[str, CheckRead]
    failing: list[str] | None = None
    detail: str | None = None
    waiting: list[str] = []
    """Why jobs may wait although the service is up: a broker down (jobs wait in the outbox),
    a queue no worker consumes. Informative: they do not make the service unready."""
    features: dict[str, FeatureRead] = {}
    """The optional features (`ocr`, `email`, `celery`, `rq`) on this host, each with why it
    is on or off and what it needs. Informative: one that is off does not make it unready."""


_READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Readiness},
    503: {"model": Readiness, "description": "The database, backend or storage fails."},
}


@router.get("/live")
async def live() -> dict[str, str]:
    """The process accepts requests. Answered on the event loop: a sync route would wait for
    a thread, so a pool busy with slow work would fail the probe of a healthy process."""
    return {"status": "ok"}


def required_backend(dispatcher: Dispatcher) -> str:
    """The backend jobs are meant to run on with these settings."""
    settings = dispatcher.settings
    if settings.JOB_BACKEND != "auto":
        return settings.JOB_BACKEND
    if settings.embedded:
        return "local"
    for name in ("celery", "rq"):
        if name in dispatcher.backends:
            return name
    return "local"


def _backend_check(request: Request, dispatcher: Dispatcher, name: str) -> CheckResult:
    backend = dispatcher.backends.get(name)
    if backend is None:
        return CheckResult(
            name=name, ok=False, detail=f"JOB_BACKEND needs {name} but it is not configured"
        )
    if name == "local":
        executor = getattr(request.app.state, "executor", None)
        if executor is not None and executor.alive == 0:
            return CheckResult(name=name, ok=False, detail="no embedded worker process alive")
        return CheckResult(name=name, ok=True)
    timeout = dispatcher.settings.BROKER_PUBLISH_TIMEOUT_SECONDS + 1.0
    return check_backend(backend=backend, timeout=timeout)


@router.get("/ready", response_class=JSONResponse, responses=_READY_RESPONSES)
def ready(request: Request) -> JSONResponse:
    """200 when the database and the configured backend work; 503 naming what fails."""
    dispatcher = get_dispatcher()
    backend = required_backend(dispatcher)
    checks = [
        check_database(
            engine=get_engine(dispatcher.settings.DATABASE_URL), timeout=DB_TIMEOUT_SECONDS
        ),
        _backend_check(request, dispatcher, backend),
    ]
    if get_store(dispatcher.settings).local_root is None:  # s3://: the bucket must answer
        checks.append(check_storage(settings=dispatcher.settings, timeout=DB_TIMEOUT_SECONDS))
    failing = [check.name for check in checks if not check.ok]
    body: dict[str, Any] = {
        "status": "unavailable" if failing else "ok",
        "backend": backend,
        "checks": {
            check.name: {"ok": check.ok, "detail": check.detail, "seconds": round(check.seconds, 4)}
            for check in checks
        },
    }
    body["waiting"] = dispatcher.waiting_summary()
    body["features"] = {
        name: asdict(feature) for name, feature in optional_features(get_settings()).items()
    }
    if failing:
        body["failing"] = failing
        body["detail"] = "; ".join(
            f"{check.name}: {check.detail}" for check in checks if not check.ok
        )
    return JSONResponse(body, status_code=503 if failing else 200)
