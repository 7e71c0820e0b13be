"""Signed download links: a person opens a report from an e-mail or a chat without a token.

The link names the job and an expiry; its signature is an HMAC (SHA-256, `SECRET_KEY`) over
the job id, the owner's id and the expiry, so it cannot be moved to another job, given a
later expiry, or outlive a change of owner. The expiry is rounded up to the hour so that the
link of a finished job is the same on every poll of that hour.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from urllib.parse import urlencode

from app.core.config import Settings
from app.core.errors import ForbiddenError

ROUND_SECONDS = 3600


class LinkRefused(ForbiddenError):
    """A signed link that was tampered with or has expired."""


def signature(settings: Settings, job_id: str, owner_id: int, expires: int) -> str:
    message = f"{job_id}:{owner_id}:{expires}".encode()
    return hmac.new(settings.link_key, message, hashlib.sha256).hexdigest()


def download_path(
    settings: Settings, job_id: str, owner_id: int, *, now: float | None = None
) -> str:
    """`/reports/jobs/{id}/download?expires=...&signature=...`, valid for the link TTL."""
    now = time.time() if now is None else now
    expires = math.ceil((now + settings.DOWNLOAD_LINK_TTL_SECONDS) / ROUND_SECONDS) * ROUND_SECONDS
    query = urlencode(
        {"expires": expires, "signature": signature(settings, job_id, owner_id, expires)}
    )
    return f"/reports/jobs/{job_id}/download?{query}"


def verify(
    settings: Settings,
    *,
    job_id: str,
    owner_id: int,
    expires: int,
    given: str,
    now: float | None = None,
) -> None:
    """Raise `LinkRefused` unless `given` signs this job, owner and expiry, not yet expired."""
    expected = signature(settings, job_id, owner_id, expires)
    # As bytes: compare_digest refuses a str with non-ASCII characters (a 500, not a 403).
    if not hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace")):
        raise LinkRefused(
            "This download link is not valid (altered or for another report). "
            "Ask for a new link, or download with your token."
        )
    if (time.time() if now is None else now) > expires:
        raise LinkRefused(
            "This download link has expired. Open the job again for a fresh link, or "
            "download with your token."
        )
