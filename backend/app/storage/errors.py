"""The errors of the storage layer, so callers never see a boto3 or OS error type.

`StorageUnavailable` is transient: the job runner (`app.jobs.faults.classify`) retries an
attempt that met it, with backoff; it is also a `ConnectionError` for older callers.
`ObjectMissing` is also a `FileNotFoundError`, so code that handled a vanished file handles a
vanished object the same way. Any other `StorageError` is a refusal a retry will not fix.
"""

from __future__ import annotations

import errno

TRANSIENT_ERRNOS = frozenset(
    {
        errno.EACCES,  # permissions changed under us (a remount, an operator's chmod)
        errno.EPERM,
        errno.EROFS,  # a filesystem remounted read-only after an error
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.EAGAIN,
        errno.EBUSY,
        errno.EINTR,
        errno.ETIMEDOUT,
        errno.ESTALE,  # NFS
        errno.ENOLCK,
        errno.EMFILE,
        errno.ENFILE,
    }
)
"""`OSError`s that say "not now" rather than "never" (a file store's, or a worker's disk)."""


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
