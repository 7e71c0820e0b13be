"""The kinds of mistake a caller can make, named by what went wrong rather than by HTTP code.

Domain packages raise subclasses of these (`DatasetNotFound(NotFoundError)`, ...); the one
handler in `app/api/errors.py` maps each kind to its status code. The message is written for
the person who sent the request: it says what was wrong and, where it can, what to do.
"""

from __future__ import annotations


class DomainError(Exception):
    """A request the service refuses; `message` is shown to the caller as it is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ForbiddenError(DomainError):
    """A credential that proves nothing: a tampered or expired signed link."""


class NotFoundError(DomainError):
    """Absent, or someone else's: the two must look the same (no existence oracle)."""


class InvalidInputError(DomainError):
    """The request is well-formed but its content cannot be used (a column, a template...)."""


class PayloadTooLargeError(DomainError):
    """An upload or body past a size limit; the message names the limit."""


class UnsupportedMediaError(DomainError):
    """A file whose content is of a type the service does not handle."""


class ConflictError(DomainError):
    """The resource is not in a state that allows this (cancel a finished job...)."""


class GoneError(DomainError):
    """It existed, but its data was removed (a job's file after cleanup)."""


class UnavailableError(DomainError):
    """The service cannot do this as configured or right now (no backend for a kind...)."""


class TooManyRequestsError(DomainError):
    """Over a rate or quota; the message names the limit, `retry_after` says when (seconds)."""

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
