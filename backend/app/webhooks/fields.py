"""The `webhook_url` field every job submission takes (a leaf: request models of every domain
import it without importing the webhook machinery)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

WEBHOOK_URL_FIELD: Any = Field(
    default=None,
    min_length=8,
    max_length=2000,
    pattern=r"^https?://[^\s]+$",
    description="POSTed the job's JSON, signed, once it is final (README: Webhooks). Its host "
    "must resolve to public addresses only, unless the service sets WEBHOOK_ALLOW_PRIVATE.",
)
"""The schema checks the shape; `target.job_params`, called by every submission, checks where
the host resolves (422 naming `webhook_url`)."""
