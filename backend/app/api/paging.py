"""Query parameters shared by every list route, bounded so that no value reaches SQL that
the database cannot hold (an offset past 2**63 used to answer 500)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

MAX_LIMIT = 200
MAX_OFFSET = 1_000_000_000

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Items to skip.")]
