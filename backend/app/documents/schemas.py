"""Request and response bodies of the documents API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.documents.models import Document
from app.documents.thumbnails import MAX_THUMBNAIL_PAGES
from app.schemas import JobAccepted, StrictModel


class DocumentRead(BaseModel):
    document_id: str
    filename: str
    mime_type: str
    size_bytes: int
    pages: int
    sha256: str
    created_at: datetime

    @classmethod
    def from_row(cls, document: Document) -> DocumentRead:
        return cls(
            document_id=document.id,
            filename=document.filename,
            mime_type=document.mime_type,
            size_bytes=document.size_bytes,
            pages=document.pages,
            sha256=document.sha256,
            created_at=document.created_at,
        )


class DocumentUploaded(BaseModel):
    document: DocumentRead
    jobs: dict[str, JobAccepted] = Field(
        default_factory=dict, description="Jobs started by the ocr/thumbnails flags, by type."
    )


class DocumentList(BaseModel):
    items: list[DocumentRead]
    total: int
    limit: int
    offset: int


class OcrRequest(StrictModel):
    languages: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_]+(\+[A-Za-z_]+)*$",
        max_length=100,
        description="Tesseract language codes joined by '+', e.g. 'eng+fra'. "
        "Default: OCR_LANGUAGES.",
    )


class ThumbnailsRequest(StrictModel):
    pages: int = Field(
        default=1,
        ge=1,
        le=MAX_THUMBNAIL_PAGES,
        description="How many leading pages get thumbnails.",
    )
