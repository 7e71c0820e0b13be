"""File helpers shared by everything that stores client data under the storage root."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024


class TooLarge(ValueError):
    """The upload passed the size limit; the message says which limit."""


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (the file's own fsync does not cover its name)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def resolve_under(root: Path, relative: str | Path, what: str) -> Path:
    """`root / relative`, refusing a stored path that would leave `root`."""
    base = root.resolve()
    path = (base / relative).resolve()
    if base not in path.parents:
        raise ValueError(f"{what} path escapes the storage root")
    return path


def display_name(filename: str, fallback: str) -> str:
    """The client's file name without any directory part, for display only."""
    name = Path(filename.replace("\\", "/")).name.strip()
    name = "".join(ch for ch in name if ch.isprintable())[:255]
    return name or fallback


def copy_limited(source: BinaryIO, dest: Path, limit: int) -> tuple[int, str]:
    """Stream an upload to `dest` (fsync'd), refusing it past `limit` bytes.

    Returns (size, sha256). Never holds more than one chunk in memory.
    """
    digest = hashlib.sha256()
    size = 0
    with dest.open("wb") as out:
        while chunk := source.read(CHUNK):
            size += len(chunk)
            if size > limit:
                raise TooLarge(
                    f"the file is larger than the upload limit of {limit:,} bytes "
                    "(MAX_UPLOAD_BYTES)"
                )
            digest.update(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size, digest.hexdigest()
