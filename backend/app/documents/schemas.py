"""Request and response bodies of the documents API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from app.core.config import Settings
from app.core.errors import InvalidInputError
from app.core.schemas import JsonInt, StrictModel
from app.documents.thumbnails import MAX_THUMBNAIL_PAGES
from app.jobs.schemas import JobAccepted
from app.webhooks.fields import WEBHOOK_URL_FIELD
from app.webhooks.target import job_params


class DocumentRead(BaseModel):
    """One document as its owner sees it, read from the row (`DocumentRead.model_validate`)."""

    model_config = ConfigDict(from_attributes=True)

    document_id: str = Field(validation_alias=AliasChoices("document_id", "id"))
    filename: str
    mime_type: str
    size_bytes: int
    pages: int
    sha256: str
    created_at: datetime


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
    webhook_url: str | None = WEBHOOK_URL_FIELD


class ThumbnailsRequest(StrictModel):
    pages: JsonInt = Field(
        default=1,
        ge=1,
        le=MAX_THUMBNAIL_PAGES,
        description="How many leading pages get thumbnails.",
    )
    webhook_url: str | None = WEBHOOK_URL_FIELD


def webhook_params(
    url: str | None, settings: Settings, *, starts_jobs: bool = True
) -> dict[str, Any]:
    """The params a document job's `webhook_url` adds ({} without one), checked at submit
    (SSRF: 422 naming the field). An upload checks it before storing anything, and only
    when the upload starts a job: otherwise nothing would ever call it."""
    if url is not None and not starts_jobs:
        raise InvalidInputError(
            "webhook_url: is called when the jobs of an upload end; give it with ocr=true or "
            "thumbnails=true, or with POST /documents/{id}/ocr or /thumbnails later"
        )
    return job_params({}, url, settings)
