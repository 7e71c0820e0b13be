"""Storing a document upload: what is specific to documents on top of `app.uploads.store`.

The upload store streams the bytes to a temporary file and keeps it only once it is
accepted; a document is accepted when its content sniffs and decodes as one of the types
we handle (`inspect_document`), within DOCUMENT_MAX_PAGES. The file is kept as sent, under
the extension of its real type.
"""

from __future__ import annotations

from typing import BinaryIO

from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import NotFoundError
from app.core.files import display_name
from app.documents.models import Document
from app.documents.sniff import inspect_document, pixel_limits
from app.uploads.store import Kept, Received, UploadStore
from app.users.models import User


class DocumentNotFound(NotFoundError):
    """No such document for this caller (also for other users' documents)."""

    def __init__(self, document_id: str) -> None:
        super().__init__("No document with this id for this token.")
        self.document_id = document_id


documents = UploadStore(
    Document, folder="documents", tmp_prefix="upload", not_found=DocumentNotFound
)
absolute_path = documents.absolute_path


def save_upload(
    *, settings: Settings, session: Session, owner: User, source: BinaryIO, filename: str
) -> Document:
    """Store the upload and add its row to `session` (commit with `documents.commit_saved`).

    Raises `UploadTooLarge` or `EmptyUpload` (`app.uploads.store`), or a `DocumentRejected`,
    each with a message for the client.
    """

    def accept(upload: Received) -> Kept[Document]:
        info = inspect_document(
            upload.path, max_pages=settings.DOCUMENT_MAX_PAGES, limits=pixel_limits(settings)
        )
        document = Document(
            filename=display_name(filename, f"document{info.extension}"),
            mime_type=info.mime_type,
            size_bytes=upload.size,
            pages=info.pages,
            sha256=upload.sha256,
        )
        return Kept(
            file=upload.path, suffix=info.extension, row=document, content_type=info.mime_type
        )

    return documents.save(
        settings=settings, session=session, owner=owner, source=source, accept=accept
    )
