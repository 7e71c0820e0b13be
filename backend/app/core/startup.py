"""What every process says when it starts, and what a worker refuses to start with.

One line per process (API, Celery worker, beat, RQ worker) names the database, storage and
broker it uses, so two processes that believe they share a deployment can be compared at a
glance. Secrets never reach the line: passwords in URLs become `***`.
"""

from __future__ import annotations

import logging
import os
import re

from app.core.config import Settings

MASK = "***"

# scheme://user:password@host...; the password runs to the last "@" so one holding "/", "#"
# or "@" is still hidden whole (a host is shown wrong sooner than a secret is shown).
_USERINFO = re.compile(
    r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@]*):(?P<pw>.*)@(?P<tail>[^@]*)$"
)
_SECRET_PARAM = re.compile(
    r"(?i)(?P<key>[?&;](?:password|passwd|pwd|secret|token|[a-z_]*key)[a-z_]*=)[^&;]*"
)


def mask_url(url: str) -> str:
    """`url` with any password replaced by `***`: in the user info and in query parameters.
    Celery failover lists (`redis://a;redis://b`) are masked one by one."""
    if ";" in url and "://" in url.split(";", 1)[1]:
        return ";".join(mask_url(part) for part in url.split(";"))
    match = _USERINFO.match(url)
    if match:
        url = f"{match['head']}:{MASK}@{match['tail']}"
    return _SECRET_PARAM.sub(lambda m: m["key"] + MASK, url)


def _storage(settings: Settings) -> str:
    # STORAGE_URL is new (another change); until it lands everywhere, the local root.
    url = getattr(settings, "STORAGE_URL", None)
    if not url:
        return str(settings.storage_root)
    described = mask_url(str(url))
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    return f"{described} (endpoint {mask_url(endpoint)})" if endpoint else described


def describe_deployment(settings: Settings, role: str) -> str:
    """`role` and the database, storage and brokers it will use, with no secret in it."""
    if settings.embedded:
        brokers = "none (embedded executor)"
    else:
        parts = [
            f"celery={mask_url(settings.CELERY_BROKER_URL)}" if settings.CELERY_BROKER_URL else "",
            f"rq={mask_url(settings.RQ_REDIS_URL)}" if settings.RQ_REDIS_URL else "",
        ]
        brokers = ", ".join(p for p in parts if p)
    return (
        f"{role} starting: environment={settings.ENVIRONMENT} "
        f"database={mask_url(settings.DATABASE_URL)} storage={_storage(settings)} "
        f"broker={brokers} job_backend={settings.JOB_BACKEND}"
    )


def log_deployment(settings: Settings, role: str) -> None:
    logging.getLogger("app.startup").info(describe_deployment(settings, role))


def broker_refusal(settings: Settings) -> str | None:
    """Why a Celery worker or beat must not start, or None. With `memory://` (or no broker,
    which Celery turns into `memory://`) it would consume a queue of its own that no API
    publishes to: jobs would wait forever while the worker looks healthy."""
    if settings.ENVIRONMENT == "test":
        return None
    url = settings.CELERY_BROKER_URL.strip()
    if url and not url.startswith("memory://"):
        return None
    shown = f"CELERY_BROKER_URL={mask_url(url)}" if url else "no CELERY_BROKER_URL"
    return (
        f"refusing to start a Celery worker or beat with {shown}: it would share no queue "
        "with the API. Set CELERY_BROKER_URL to the deployment's broker "
        "(e.g. redis://host:6379/0), the same for the API and every worker."
    )


def require_broker(settings: Settings) -> None:
    """Exit (SystemExit, which Celery's signal dispatch does not swallow) on `broker_refusal`."""
    reason = broker_refusal(settings)
    if reason:
        raise SystemExit(reason)
