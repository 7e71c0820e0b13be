"""Which backends may run each job type: the one rule, stated here and in the README.

1. Embedded mode (no broker configured, or `JOB_BACKEND=local`): the embedded executor runs
   every kind. This is `make run`.
2. `JOB_BACKEND=celery` or `rq`: that backend runs every kind; nothing falls back.
3. `JOB_BACKEND=auto` with brokers: a light kind goes to Celery, else RQ, else the embedded
   executor; a heavy kind (PDF, Excel and analysis reports) to Celery only, as the
   specification says: it never runs in the API's own processes of a deployment that has
   workers, and waits in the outbox while the Celery broker is down. Without a Celery broker
   configured there a heavy kind has no backend at all, and its submission is refused
   (`NoBackendForKind`, 503) rather than accepted to wait forever.

A job that waits says why in its status message (`waiting_reason`).
"""

from __future__ import annotations

from collections.abc import Collection

from app.core.config import Settings
from app.core.errors import UnavailableError
from app.jobs.registry import JobKind

AUTO_ORDER = ("celery", "rq", "local")
NAMES = {
    "celery": "the Celery broker",
    "rq": "the RQ Redis server",
    "local": "the embedded executor",
}


class NoBackendForKind(UnavailableError):
    """The settings give this kind of job no backend: a deployment problem (HTTP 503)."""


def backends_for(kind: JobKind, settings: Settings, configured: Collection[str]) -> list[str]:
    """The backends that may run `kind`, best first, among the `configured` ones."""
    choice = settings.JOB_BACKEND
    if choice != "auto":
        return [choice] if choice in configured else []
    if settings.embedded:
        return ["local"]
    if kind.heavy:
        return ["celery"] if "celery" in configured else []
    return [name for name in AUTO_ORDER if name in configured]


def no_backend_message(kind: JobKind, settings: Settings) -> str:
    if settings.JOB_BACKEND != "auto":
        return (
            f"JOB_BACKEND={settings.JOB_BACKEND} but that backend is not configured "
            f"(set {_url_setting(settings.JOB_BACKEND)})"
        )
    return (
        f"{kind.job_type} jobs run on Celery only when a broker is configured, and "
        "CELERY_BROKER_URL is not set (set it, or JOB_BACKEND=rq to run every kind on RQ)"
    )


def waiting_reason(candidates: Collection[str], errors: dict[str, str | None]) -> str:
    """Why a job no backend took now waits `pending`: each backend it may run on, and what
    went wrong with it."""
    parts = []
    for name in candidates:
        error = errors.get(name)
        parts.append(f"{NAMES.get(name, name)} ({error})" if error else NAMES.get(name, name))
    waited = " or ".join(parts) or "a backend"
    return f"waiting for {waited}; published as soon as it answers"[:500]


def _url_setting(backend: str) -> str:
    return {"celery": "CELERY_BROKER_URL", "rq": "RQ_REDIS_URL"}.get(backend, "LOCAL_WORKERS")
