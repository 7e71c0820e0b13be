"""One store for every kind of owned upload: receive, keep, list, get, delete.

An upload streams to a temporary file in this host's SCRATCH_DIR (hashed and counted on the
way, cut off at MAX_UPLOAD_BYTES). The kind then checks what arrived and says which file to
keep (the upload itself, or something made from it) and the row that describes it. Only then
is the file put in the object store (`app.storage`) under its key, `<folder>/ab/<id><suffix>`,
and the row added with that key in `path`, so a refused upload leaves nothing behind: every
scratch file of the upload is removed whatever happens.

Rows belong to their uploader: someone else's is reported exactly like a missing one. The
object of a deleted row is removed only once the delete is committed, and the object of a
saved row is removed if its commit fails, so a row never outlives its object.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Generic, Protocol, TypeVar, cast

from sqlalchemy import func, select
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import InvalidInputError, NotFoundError, PayloadTooLargeError
from app.core.files import TooLarge, copy_limited
from app.db.base import Base, new_id
from app.storage import StorageError, get_store
from app.users.models import User

log = logging.getLogger(__name__)


class UploadTooLarge(PayloadTooLargeError):
    """The upload passed MAX_UPLOAD_BYTES while it streamed in."""


class EmptyUpload(InvalidInputError):
    """The upload has no bytes at all."""


class OwnedFile(Protocol):
    """The columns the store relies on (as seen on a row); a kind's model has more."""

    id: str
    owner_id: int
    path: str
    """The storage key (for rows older than the object store, the path relative to the
    storage root, which is the same string)."""
    created_at: datetime


REQUIRED_COLUMNS = frozenset({"id", "owner_id", "path", "created_at"})

RowT = TypeVar("RowT", bound=Base)
"""A mapped model with the `OwnedFile` columns (checked when its store is made: mypy cannot
bound a type variable by a protocol of `Mapped[...]` attributes, see `_owned`)."""


def _owned(row: Base) -> OwnedFile:
    # The model's columns were checked against REQUIRED_COLUMNS in UploadStore.__init__.
    return cast(OwnedFile, row)


@dataclass(frozen=True)
class Received:
    """The bytes as sent, in a temporary file in this host's scratch directory."""

    path: Path
    size: int
    sha256: str
    stem: str
    """Every scratch path of this upload starts with it (see `scratch`)."""

    def scratch(self, suffix: str) -> Path:
        """A path next to the upload for a by-product (file or directory), removed with it."""
        return self.path.with_name(f"{self.stem}{suffix}")


@dataclass(frozen=True)
class Kept(Generic[RowT]):
    """What the kind keeps of an upload: a file and the row describing it.

    `row` has the kind's own columns set; the store fills in `id`, `owner_id` and `path`.
    """

    file: Path
    """The upload itself or a scratch file made from it; it is put in the store."""
    suffix: str
    """Of the stored file, e.g. ".pdf"."""
    row: RowT
    content_type: str = "application/octet-stream"
    """Of the stored object (what a store serving it directly would send)."""


Accept = Callable[[Received], Kept[RowT]]
"""Checks what arrived (raising a `DomainError` to refuse it) and says what to keep."""


@dataclass(frozen=True)
class Page(Generic[RowT]):
    items: list[RowT]
    total: int


class UploadStore(Generic[RowT]):
    """The uploads of one kind: rows of `model`, objects under the key prefix `folder/`.

    `tmp_prefix` names the temporary files (`<SCRATCH_DIR>/<prefix>-<random>...`);
    `not_found` builds the error for an id that is absent or someone else's.
    """

    def __init__(
        self,
        model: type[RowT],
        *,
        folder: str,
        tmp_prefix: str,
        not_found: Callable[[str], NotFoundError],
    ) -> None:
        self.model = model
        self.folder = folder
        self.tmp_prefix = tmp_prefix
        self.not_found = not_found
        self._columns = sa_inspect(model).columns
        """The mapped columns, for queries (`OwnedFile` only describes a row's attributes)."""
        missing = REQUIRED_COLUMNS - set(self._columns.keys())
        if missing:
            raise TypeError(f"{model.__name__} lacks the columns {sorted(missing)}")

    def key_of(self, row: RowT) -> str:
        """The row's storage key."""
        return _owned(row).path

    def absolute_path(self, settings: Settings, row: RowT) -> Path:
        """The row's file on this host, for a `file://` store only (ValueError otherwise, and
        for a key that would leave the storage root). Workers use the key, never this."""
        path = get_store(settings).local_path(self.key_of(row))
        if path is None:
            raise ValueError(f"{self.folder}: a remote store has no local path")
        return path

    # ------------------------------------------------------------------------- writes

    def save(
        self,
        *,
        settings: Settings,
        session: Session,
        owner: User,
        source: BinaryIO,
        accept: Accept[RowT],
    ) -> RowT:
        """Receive the upload, let `accept` check it, keep its file and add its row to
        `session` (flushed; commit with `commit_saved`).

        Raises `UploadTooLarge` or `EmptyUpload`, or whatever `accept` raises; neither the
        session nor `owner` is touched before the upload has been accepted.
        """
        tmp_dir = settings.scratch_dir
        tmp_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{self.tmp_prefix}-{uuid.uuid4().hex}"
        upload = tmp_dir / f"{stem}.part"
        objects = get_store(settings)
        try:
            size, digest = _receive(source, upload, settings.MAX_UPLOAD_BYTES)
            kept = accept(Received(path=upload, size=size, sha256=digest, stem=stem))
            row_id = new_id()
            key = f"{self.folder}/{row_id[:2]}/{row_id}{kept.suffix}"
            # A fresh key: on failure nothing but this upload's object can be affected.
            objects.put_file(key, kept.file, kept.content_type, move=True)
        finally:
            _remove_scratch(tmp_dir, stem)
        row = kept.row
        fields = _owned(row)
        fields.id = row_id
        fields.owner_id = owner.id
        fields.path = key
        try:
            session.add(row)
            session.flush()
        except BaseException:
            objects.delete(key)
            raise
        return row

    def commit_saved(self, *, settings: Settings, session: Session, row: RowT) -> None:
        """Commit the saved row; if that fails, its object goes too (no orphan object)."""
        try:
            session.commit()
        except BaseException:
            get_store(settings).delete(self.key_of(row))
            raise

    def delete_owned(
        self, *, settings: Settings, session: Session, owner: User, upload_id: str
    ) -> None:
        """Delete the caller's row, commit, then remove its object: a failed commit never
        leaves a row without its object. Raises the kind's not-found error.

        The row is gone once committed; an object the store then fails to delete is logged
        (an orphan for an operator to sweep), not reported as a failed delete.
        """
        row = self.get_owned(session=session, owner=owner, upload_id=upload_id)
        key = self.key_of(row)
        session.delete(row)
        session.commit()
        try:
            get_store(settings).delete(key)
        except StorageError as exc:
            log.warning(
                "%s: deleted row %s, but not its object %s: %s", self.folder, upload_id, key, exc
            )

    # ------------------------------------------------------------------------- reads

    def find_owned(self, *, session: Session, owner: User, upload_id: str) -> RowT | None:
        """The caller's row, or None (also for someone else's)."""
        row = session.get(self.model, upload_id)
        if row is None or _owned(row).owner_id != owner.id:
            return None
        return row

    def get_owned(self, *, session: Session, owner: User, upload_id: str) -> RowT:
        """The caller's row; someone else's is as absent as a missing one."""
        row = self.find_owned(session=session, owner=owner, upload_id=upload_id)
        if row is None:
            raise self.not_found(upload_id)
        return row

    def list_owned(self, *, session: Session, owner: User, limit: int, offset: int) -> Page[RowT]:
        """The caller's rows, newest first, and how many there are in all."""
        columns = self._columns
        query = select(self.model).where(columns["owner_id"] == owner.id)
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        newest_first = (columns["created_at"].desc(), columns["id"])
        items = session.scalars(query.order_by(*newest_first).limit(limit).offset(offset)).all()
        return Page(items=list(items), total=int(total))


def _receive(source: BinaryIO, dest: Path, limit: int) -> tuple[int, str]:
    try:
        size, digest = copy_limited(source, dest, limit)
    except TooLarge as exc:
        raise UploadTooLarge(str(exc)) from None
    if size == 0:
        raise EmptyUpload("the uploaded file is empty")
    return size, digest


def _remove_scratch(tmp_dir: Path, stem: str) -> None:
    """Remove the upload and every by-product named after it (the kept file has moved)."""
    for path in tmp_dir.glob(f"{stem}*"):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
