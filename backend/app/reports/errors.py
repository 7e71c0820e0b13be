"""The one mistake a heavy report request can make: not fitting its dataset.

It is an `InvalidInputError`, so the API's single error handler decides the HTTP status; the
reports package only says what was wrong. Workers turn it into a permanent job failure.
"""

from __future__ import annotations

from app.core.errors import InvalidInputError


class InvalidReportRequest(InvalidInputError):
    """The request does not fit the dataset; the message says which column and what exists."""
