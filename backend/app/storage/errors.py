"""The errors of the storage layer, so callers never see a boto3 or OS error type.

`StorageUnavailable` is also a `ConnectionError`, so the job runner's `TRANSIENT_ERRORS`
retries an attempt that met a storage outage; `ObjectMissing` is also a `FileNotFoundError`,
so code that handled a vanished file handles a vanished object the same way.
"""

from __future__ import annotations


class StorageError(Exception):
    """The storage refused or failed an operation in a way a retry will not fix."""


class StorageUnavailable(StorageError, ConnectionError):
    """The storage did not answer, throttled us, or failed on its side (5xx): retry later."""


class ObjectMissing(StorageError, FileNotFoundError):
    """No object under this key (never stored, or deleted since)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no stored object {key!r}")
        self.key = key


class InvalidKey(StorageError, ValueError):
    """A key that is empty, absolute, or would climb out of the store (`..`)."""
