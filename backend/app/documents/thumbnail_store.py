"""Single thumbnails in the object store, besides the job's ZIP.

The thumbnails job puts each image it makes under `thumbnails/<document_id>/p<page>-<size>.<ext>`
too, so a client fetches the one size it shows (`GET /documents/{id}/thumbnails/{size}`)
instead of a ZIP of all. The latest job's images replace earlier ones; deleting the document
deletes them.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from app.core.config import Settings
from app.core.errors import NotFoundError
from app.documents.models import Document
from app.documents.sniff import JPEG
from app.storage import ObjectMissing, ObjectStore, get_store

MAX_SINGLE_BYTES = 16 * 1024 * 1024
"""A thumbnail is at most 4096 px a side; far below this, read whole into memory."""


class ThumbnailNotFound(NotFoundError):
    """No such size, or none made yet, for this document."""


def prefix_of(document_id: str) -> str:
    return f"thumbnails/{document_id}/"


def media_type_of(mime_type: str) -> tuple[str, str]:
    """(extension, media type) of a document's thumbnails: JPEG for photos, else PNG (as in
    `thumbnails.write_thumbnails_zip`)."""
    return ("jpg", JPEG) if mime_type == JPEG else ("png", "image/png")


def key_of(document_id: str, mime_type: str, page: int, size: int) -> str:
    ext, _ = media_type_of(mime_type)
    return f"{prefix_of(document_id)}p{page}-{size}.{ext}"


def put_singles(
    store: ObjectStore, *, document_id: str, zip_path: Path, scratch_dir: Path, prefix: str
) -> list[str]:
    """Store each entry of the thumbnails ZIP as its own object; the keys written."""
    keys: list[str] = []
    scratch_dir.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            ext = info.filename.rsplit(".", 1)[-1]
            media = JPEG if ext == "jpg" else "image/png"
            with tempfile.NamedTemporaryFile(dir=scratch_dir, prefix=prefix, delete=False) as fh:
                fh.write(archive.read(info))
                local = Path(fh.name)
            key = prefix_of(document_id) + info.filename
            try:
                store.put_file(key, local, media, move=True)
            finally:
                local.unlink(missing_ok=True)
            keys.append(key)
    return keys


def read_single(
    settings: Settings, document: Document, *, size: int, page: int
) -> tuple[bytes, str]:
    """The bytes and media type of one stored thumbnail, or `ThumbnailNotFound` saying
    which sizes exist or how to make them."""
    sizes = sorted({int(s) for s in settings.THUMBNAIL_SIZES})
    if size not in sizes:
        raise ThumbnailNotFound(
            f"No thumbnail size {size}: the sizes are {', '.join(map(str, sizes))} "
            "(THUMBNAIL_SIZES)."
        )
    if page > document.pages:
        raise ThumbnailNotFound(f"The document has {document.pages} page(s), not {page}.")
    _, media = media_type_of(document.mime_type)
    key = key_of(document.id, document.mime_type, page, size)
    try:
        data = b"".join(get_store(settings).read_chunks(key, length=MAX_SINGLE_BYTES))
    except ObjectMissing:
        raise ThumbnailNotFound(
            f"No thumbnail of page {page} yet: start a thumbnails job "
            f"(POST /documents/{document.id}/thumbnails with pages >= {page}) and wait for it."
        ) from None
    return data, media


def delete_singles(settings: Settings, document_id: str) -> None:
    get_store(settings).delete_prefix(prefix_of(document_id))
