"""The `ObjectStore` interface every file of the service goes through, and its key rules.

Keys are relative, `/`-separated names such as `datasets/ab/<id>.parquet` or
`artifacts/<job_id>/report.pdf`; rows store keys, never host paths, so the API and the
workers may run on different hosts. Everything streams: no method holds a whole object in
memory.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

from app.storage.errors import InvalidKey, ObjectMissing

CHUNK_BYTES = 1024 * 1024


def check_key(key: str) -> str:
    """`key` if it is a safe relative name; `InvalidKey` otherwise."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or any(p in ("", ".", "..") for p in parts):
        raise InvalidKey(f"invalid storage key {key!r}")
    return key


def check_prefix(prefix: str) -> str:
    """A folder-like prefix (`artifacts/<job_id>/`): a valid key followed by `/`."""
    if not prefix.endswith("/"):
        raise InvalidKey(f"a storage prefix must end with '/': {prefix!r}")
    check_key(prefix[:-1])
    return prefix


class ObjectStore(ABC):
    """Put, read, download and delete objects by key."""

    url: str
    """Where the store is, for logs and health output (never carries credentials)."""

    @abstractmethod
    def put_file(self, key: str, source: Path, content_type: str, *, move: bool = False) -> None:
        """Store the local file `source` under `key`, atomically (a reader sees the old
        object or the whole new one). With `move`, `source` may be consumed (renamed) instead
        of copied; the caller must not use it afterwards either way."""

    @abstractmethod
    def read_chunks(
        self, key: str, *, start: int = 0, length: int | None = None, chunk: int = CHUNK_BYTES
    ) -> Iterator[bytes]:
        """The bytes of `key` from `start` (`length` of them, or to the end), in chunks.

        Raises `ObjectMissing` on the call, before the first chunk, so a caller can answer
        404/410 before it starts sending."""

    @abstractmethod
    def download(self, key: str, dest: Path) -> None:
        """Write the object to the local path `dest` (replaced if present)."""

    @abstractmethod
    def size(self, key: str) -> int:
        """The object's size in bytes; `ObjectMissing` if absent."""

    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except ObjectMissing:
            return False
        return True

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove one object; an absent one is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every object under `prefix` (ending with `/`); how many went."""

    def local_path(self, key: str) -> Path | None:
        """The object as a file on this host, when the store is a local directory (read in
        place, no copy); None for a remote store. The file may not exist."""
        return None

    @property
    def local_root(self) -> Path | None:
        """The directory holding the objects, for a store on this host's disk."""
        return None

    @abstractmethod
    def ping(self) -> str:
        """Check the store answers (raises a `StorageError`); a short description."""
