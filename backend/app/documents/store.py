"""Storing an upload: stream it to the storage volume, check what it is, then keep it.

The bytes go to a temporary file on the same volume (hashed and counted on the way, cut off
at MAX_UPLOAD_BYTES), are sniffed and decoded there, and only then renamed into place and
recorded. A refused upload leaves nothing behind.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.files import TooLarge, copy_limited, display_name, fsync_dir, resolve_under
from app.documents.models import Document
from app.documents.sniff import DocumentRejected, inspect_document
from app.models import User, new_id


class UploadTooLarge(DocumentRejected):
    status_code = 413


class EmptyUpload(DocumentRejected):
    status_code = 422


class DocumentNotFound(LookupError):
    pass


def documents_root(settings: Settings) -> Path:
    return settings.storage_root / "documents"


def absolute_path(settings: Settings, document: Document) -> Path:
    """Where the file is; refuses a row whose path would leave the storage root."""
    return resolve_under(settings.storage_root, document.path, "document")


def save_upload(
    *, settings: Settings, session: Session, owner: User, source: BinaryIO, filename: str
) -> Document:
    """Store the upload and add its row to `session` (the caller commits).

    Raises `DocumentRejected` (413, 415 or 422) with a message for the client.
    """
    document_id = new_id()
    tmp_dir = settings.storage_root / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"upload-{uuid.uuid4().hex}.part"
    try:
        size, digest = _copy_limited(source, tmp, settings.MAX_UPLOAD_BYTES)
        info = inspect_document(tmp, max_pages=settings.DOCUMENT_MAX_PAGES)
        relative = Path("documents") / document_id[:2] / f"{document_id}{info.extension}"
        final = settings.storage_root / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    document = Document(
        id=document_id,
        owner_id=owner.id,
        filename=_display_name(filename, info.extension),
        mime_type=info.mime_type,
        path=str(relative),
        size_bytes=size,
        pages=info.pages,
        sha256=digest,
    )
    session.add(document)
    session.flush()
    return document


def get_owned(*, session: Session, owner: User, document_id: str) -> Document:
    """The caller's document; someone else's is as absent as a missing one."""
    document = session.get(Document, document_id)
    if document is None or document.owner_id != owner.id:
        raise DocumentNotFound(document_id)
    return document


def list_owned(
    *, session: Session, owner: User, limit: int, offset: int
) -> tuple[list[Document], int]:
    query = select(Document).where(Document.owner_id == owner.id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(
        query.order_by(Document.created_at.desc(), Document.id).limit(limit).offset(offset)
    ).all()
    return list(items), int(total)


def delete_owned(*, settings: Settings, session: Session, owner: User, document_id: str) -> Path:
    """Delete the row (the caller commits) and return the file to unlink once committed, so a
    failed commit never leaves a row without its file. A job already queued on the document
    fails with a readable error ("the document file is gone ...")."""
    document = get_owned(session=session, owner=owner, document_id=document_id)
    path = absolute_path(settings, document)
    session.delete(document)
    session.flush()
    return path


def _copy_limited(source: BinaryIO, dest: Path, limit: int) -> tuple[int, str]:
    try:
        size, digest = copy_limited(source, dest, limit)
    except TooLarge as exc:
        raise UploadTooLarge(str(exc)) from None
    if size == 0:
        raise EmptyUpload("the uploaded file is empty")
    return size, digest


def _display_name(filename: str, extension: str) -> str:
    return display_name(filename, f"document{extension}")
