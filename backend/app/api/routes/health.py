"""Liveness and readiness, without authentication (for load balancers and orchestrators)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.core.db import get_engine
from app.jobs.dispatch import get_dispatcher

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live")
def live() -> dict[str, str]:
    """The process accepts requests."""
    return {"status": "ok"}


@router.get("/ready")
def ready() -> JSONResponse:
    """The database answers and at least one backend can take jobs; 503 names what fails."""
    checks: dict[str, str] = {}
    try:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}: {exc}"
    dispatcher = get_dispatcher()
    for name in dispatcher.backends:
        breaker = dispatcher.breakers.get(name)
        if breaker is not None and breaker.is_open:
            checks[name] = f"down: {breaker.last_error or 'unreachable'}"
        else:
            checks[name] = "ok"
    preferred = dispatcher.settings.JOB_BACKEND
    failing = [k for k, v in checks.items() if v != "ok" and (k == "database" or k == preferred)]
    ok = not failing
    body = {"status": "ok" if ok else "unavailable", "checks": checks}
    if failing:
        body["failing"] = failing
    return JSONResponse(body, status_code=200 if ok else 503)
