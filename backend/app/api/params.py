"""Path and query parameters shared by routes, bounded so that only a value the database
can hold reaches SQL: a NUL byte in a PostgreSQL text parameter used to answer 500."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

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
