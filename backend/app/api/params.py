"""Path and query parameters shared by routes, bounded so that only a value the database
can hold reaches SQL: a NUL byte in a PostgreSQL text parameter used to answer 500."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import BeforeValidator

ID_PATTERN = r"^[A-Za-z0-9-]{1,64}$"

ResourceId = Annotated[
    str,
    Path(pattern=ID_PATTERN, description="The id the resource was created with (a UUID)."),
]
"""A job, dataset or document id: the UUIDs `new_id` makes, and anything else that could be
one (404, like someone else's); a character no id has is a 422."""

JobType = Annotated[
    str | None,
    Query(pattern=r"^[a-z_]{1,40}$", description="Only jobs of this type (`pdf`, `email`...)."),
]


_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


def _iso_only(value: Any) -> Any:
    """Pydantic alone would read `0.5` as a Unix time and `2026-01-31` as midnight; the
    schema says an ISO 8601 date-time (a zone is optional: UTC without one)."""
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
        raise ValueError("expected an ISO 8601 date-time, e.g. 2026-01-31T12:00:00Z")
    return value


def _moment(description: str) -> Any:
    return Annotated[datetime | None, BeforeValidator(_iso_only), Query(description=description)]


CreatedAfter = _moment("Only jobs created at or after this (ISO 8601; UTC if no zone).")
CreatedBefore = _moment("Only jobs created before this (ISO 8601; UTC if no zone).")
