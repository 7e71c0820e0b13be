"""The FastAPI application: routers, error handlers, and the embedded executor's lifecycle."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.api import console
from app.api.errors import BodySizeLimit, install_error_handlers
from app.api.routes import (
    datasets,
    docs,
    documents,
    events,
    health,
    notifications,
    reports,
    schedules,
    webhooks,
)
from app.api.routes import metrics as metrics_route
from app.core import metrics_multiprocess
from app.core.config import Settings, get_settings, set_settings
from app.core.logging import configure_logging
from app.core.startup import log_deployment
from app.db import loop_connections
from app.jobs.dispatch import Dispatcher, set_dispatcher
from app.jobs.local_executor import ExecutorSeat
from app.jobs.registry import initialise_metrics
from app.jobs.relay import RelayThread

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. With `settings`, they become this process's settings (tests)."""
    if settings is not None:
        set_settings(settings)
    settings = get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Before the executor starts: its worker processes inherit the metrics directory.
        metrics_multiprocess.setup_multiprocess(settings)
        configure_logging(settings)
        log_deployment(settings, "api")
        # One API process of a `reportctl serve --workers N` runs the executor and the
        # relay's passes (ExecutorSeat says why); alone, this process always does.
        seat = ExecutorSeat(settings, metrics_multiprocess.shared_instance())
        local = settings.LOCAL_WORKERS > 0
        dispatcher = Dispatcher(settings, wake_local=seat.wake if local else None)
        set_dispatcher(dispatcher)
        initialise_metrics(dispatcher.backends)  # after the multiprocess set-up above
        seat.take()
        relay = RelayThread(settings, dispatcher, seat.supervise, sweeps=lambda: seat.held)
        relay.start()
        app.state.executor = seat if local else None
        app.state.dispatcher = dispatcher
        log.info(
            "service ready (%s mode, backends: %s)",
            "embedded" if settings.embedded else "broker",
            ", ".join(dispatcher.backends),
        )
        try:
            yield
        finally:
            relay.stop()
            seat.stop()
            set_dispatcher(None)
            await loop_connections.close_for_this_loop()

    app = FastAPI(
        title="Report job service",
        version="0.1.0",
        description="Heavy reports, documents and e-mail as asynchronous jobs.",
        lifespan=lifespan,
        # Served from the package's own assets (`api/routes/docs.py`), not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    app.add_middleware(
        BodySizeLimit,
        json_limit=settings.MAX_JSON_BODY_BYTES,
        upload_limit=settings.MAX_UPLOAD_BYTES,
        # Only these take multipart and large bodies; every other route gets the JSON limit.
        upload_routes=[("POST", "/datasets"), ("POST", "/documents"), ("POST", "/ui/datasets")],
        # 10,000 recipients with their template contexts do not fit in the default limit.
        json_limits_by_path={"/notifications/bulk": max(settings.MAX_JSON_BODY_BYTES, 8 << 20)},
    )
    app.include_router(health.router)
    app.include_router(metrics_route.router)
    app.include_router(reports.router)
    app.include_router(webhooks.router)
    app.include_router(schedules.router)
    app.include_router(datasets.router)
    app.include_router(documents.router)
    app.include_router(notifications.router)
    app.include_router(events.router)
    app.include_router(docs.router)
    app.mount(docs.STATIC_URL, docs.static_files(), name="static")
    console.install(app)
    return app
