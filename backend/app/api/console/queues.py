"""The console's queue page, for admins: the status screen of `celery_manager.py status`
(workers, queues, waiting and stuck jobs, recent failures) in the browser."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, Response

from app.api.console.auth import ConsoleVisitor
from app.api.console.render import page
from app.core.config import get_settings
from app.jobs.dispatch import get_dispatcher
from app.monitoring.status import snapshot

router = APIRouter()
BROKER_TIMEOUT_SECONDS = 1.0


@router.get("/queues", response_class=HTMLResponse)
async def queues(request: Request, visitor: ConsoleVisitor) -> Response:
    """Admins only; anyone else gets the 404 an unknown page gets."""
    if not visitor.user.is_admin:
        return page(request, "error.html", visitor, 404, message="No such page.")
    state = await run_in_threadpool(snapshot, get_settings(), BROKER_TIMEOUT_SECONDS)
    return page(
        request,
        "queues.html",
        visitor,
        state=state,
        waiting_notes=get_dispatcher().waiting_summary(),
    )
