"""Staging an object into a worker's own scratch directory for the length of an attempt.

Builders read local files (DuckDB, Pillow, pdfium). With a `file://` store the object is
read where it is, no copy; otherwise it is downloaded into the scratch directory and removed
when the block ends, whatever happens.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from app.storage.base import ObjectStore
from app.storage.errors import ObjectMissing


@contextmanager
def staged(store: ObjectStore, key: str, scratch_dir: Path, *, prefix: str) -> Iterator[Path]:
    """A local path holding the object `key` (`ObjectMissing` if there is none).

    `prefix` starts the staged file's name (`<job_id>-<attempt>-`), so an attempt's leftovers are
    found by the runner's scratch sweep even after a kill.
    """
    local = store.local_path(key)
    if local is not None:
        if not local.is_file():
            raise ObjectMissing(key)
        yield local
        return
    scratch_dir.mkdir(parents=True, exist_ok=True)
    suffix = Path(key).suffix
    fd, name = tempfile.mkstemp(prefix=f"{prefix}staged-", suffix=suffix, dir=scratch_dir)
    os.close(fd)
    path = Path(name)
    try:
        store.download(key, path)
        yield path
    finally:
        path.unlink(missing_ok=True)
