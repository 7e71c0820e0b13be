"""`file:///abs/path`: objects are files under one local (or shared) directory.

Writes are atomic and durable: the bytes go to a temporary file in the target's own
directory, are fsync'd, `os.replace`d to the final name, and the directory is fsync'd so the
name survives a crash. A readable key maps to exactly one path under the root.

OS errors come out as the storage layer's: `StorageUnavailable` for the ones an operator
fixes without touching the job (`TRANSIENT_ERRNOS`: a full or read-only disk, permissions,
I/O errors, a stale NFS handle), `StorageError` for the rest.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from app.core.files import fsync_dir
from app.storage.base import CHUNK_BYTES, ObjectStore, check_key, check_prefix
from app.storage.errors import (
    TRANSIENT_ERRNOS,
    InvalidKey,
    ObjectMissing,
    StorageError,
    StorageUnavailable,
)


class FileStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.url = f"file://{self.root}"

    def __repr__(self) -> str:
        return f"FileStore({self.url})"

    def path_of(self, key: str) -> Path:
        """The file of `key`, refusing a key that would leave the root."""
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise InvalidKey(f"storage key {key!r} escapes the storage root")
        return path

    def local_path(self, key: str) -> Path:
        return self.path_of(key)

    @property
    def local_root(self) -> Path:
        return self.root

    # ------------------------------------------------------------------------- writes

    def put_file(self, key: str, source: Path, content_type: str, *, move: bool = False) -> None:
        target = self.path_of(key)
        with _os_errors(f"storing {key!r}"):
            self._put(source, target, move)

    def _put(self, source: Path, target: Path, move: bool) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if move and _same_device(source, target.parent):
            with open(source, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(source, target)
        else:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            try:
                with os.fdopen(fd, "wb") as out, open(source, "rb") as src:
                    shutil.copyfileobj(src, out, CHUNK_BYTES)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp_name, target)
            except BaseException:
                Path(tmp_name).unlink(missing_ok=True)
                raise
        fsync_dir(target.parent)

    def delete(self, key: str) -> None:
        path = self.path_of(key)
        with _os_errors(f"deleting {key!r}"):
            path.unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> int:
        folder = self.path_of(check_prefix(prefix)[:-1])
        if not folder.is_dir():
            return 0
        count = sum(1 for p in folder.rglob("*") if p.is_file())
        shutil.rmtree(folder, ignore_errors=True)
        return count

    # ------------------------------------------------------------------------- reads

    def read_chunks(
        self, key: str, *, start: int = 0, length: int | None = None, chunk: int = CHUNK_BYTES
    ) -> Iterator[bytes]:
        handle = self._open(key)
        return _chunks(key, handle, start, length, chunk)

    def download(self, key: str, dest: Path) -> None:
        with self._open(key) as src, _os_errors(f"reading {key!r}"), open(dest, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK_BYTES)

    def size(self, key: str) -> int:
        path = self.path_of(key)
        try:
            with _os_errors(f"reading {key!r}"):
                return path.stat().st_size
        except FileNotFoundError:
            raise ObjectMissing(key) from None

    def ping(self) -> str:
        if not os.access(self.root if self.root.exists() else self.root.parent, os.W_OK):
            raise StorageError(f"{self.root} is not writable")
        return str(self.root)

    def _open(self, key: str) -> BinaryIO:
        path = self.path_of(key)
        try:
            with _os_errors(f"reading {key!r}"):
                return open(path, "rb")
        except (FileNotFoundError, IsADirectoryError):
            raise ObjectMissing(key) from None


@contextmanager
def _os_errors(what: str) -> Iterator[None]:
    """An `OSError` in the block as a storage error: transient or not, by its errno.

    `FileNotFoundError` and `IsADirectoryError` pass through for the caller to map (a missing
    object is the caller's to name)."""
    try:
        yield
    except (StorageError, FileNotFoundError, IsADirectoryError):
        raise
    except OSError as exc:
        if exc.errno in TRANSIENT_ERRNOS or isinstance(exc, TimeoutError):
            raise StorageUnavailable(f"{what}: {exc.strerror or exc}") from exc
        raise StorageError(f"{what}: {exc}") from exc


def _chunks(
    key: str, handle: BinaryIO, start: int, length: int | None, chunk: int
) -> Iterator[bytes]:
    with handle, _os_errors(f"reading {key!r}"):
        handle.seek(start)
        left = length
        while left is None or left > 0:
            data = handle.read(chunk if left is None else min(chunk, left))
            if not data:
                return
            if left is not None:
                left -= len(data)
            yield data


def _same_device(source: Path, directory: Path) -> bool:
    """A rename works only within one filesystem; otherwise the file is copied."""
    try:
        return os.stat(source).st_dev == os.stat(directory).st_dev
    except OSError:
        return False
