"""Where every file of the service lives: one `ObjectStore`, chosen by `STORAGE_URL`.

`file:///abs/path` keeps objects as files in a directory (the default, `var/storage`);
`s3://bucket/prefix` keeps them in any S3-compatible store. This package sits below the
domains: it imports nothing but `app.core`.
"""

from __future__ import annotations

import os
from functools import lru_cache
from urllib.parse import unquote, urlparse

from app.core.config import Settings
from app.storage.base import ObjectStore, check_key
from app.storage.errors import InvalidKey, ObjectMissing, StorageError, StorageUnavailable
from app.storage.staging import staged

__all__ = [
    "InvalidKey",
    "ObjectMissing",
    "ObjectStore",
    "StorageError",
    "StorageUnavailable",
    "check_key",
    "get_store",
    "open_store",
    "staged",
]


def get_store(settings: Settings) -> ObjectStore:
    """The store of `settings.STORAGE_URL`, one per URL and process (a forked worker builds
    its own client rather than share the parent's connections)."""
    return _cached(settings.storage_url, os.getpid())


@lru_cache(maxsize=16)
def _cached(url: str, pid: int) -> ObjectStore:
    return open_store(url)


def open_store(url: str) -> ObjectStore:
    """A new store for `url` (`file:///abs/path` or `s3://bucket[/prefix]`)."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        from pathlib import Path

        from app.storage.file_store import FileStore

        if parsed.netloc not in ("", "localhost"):
            raise ValueError(f"STORAGE_URL {url!r}: a file URL names no host (file:///path)")
        return FileStore(Path(unquote(parsed.path)))
    if parsed.scheme == "s3":
        from app.storage.s3_store import S3Store

        if not parsed.netloc:
            raise ValueError(f"STORAGE_URL {url!r}: no bucket (s3://bucket/prefix)")
        return S3Store(parsed.netloc, parsed.path)
    raise ValueError(f"STORAGE_URL {url!r}: expected file:///path or s3://bucket/prefix")
