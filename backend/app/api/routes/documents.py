"""Document routes: upload (optionally starting OCR/thumbnails), list, read, start jobs.

Jobs go through `accept_job`, so they are followed like any other at /reports/jobs/{id}.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, File, Form, Path, Query, Response, UploadFile, status

from app.api import responses
from app.api.deps import CurrentUser, SessionDep, StoringUser
from app.api.paging import Limit, Offset
from app.api.params import ResourceId
from app.core.config import get_settings
from app.core.errors import InvalidInputError, NotFoundError, UnsupportedMediaError
from app.documents import languages, thumbnail_store
from app.documents.models import Document
from app.documents.schemas import (
    DocumentList,
    DocumentRead,
    DocumentUploaded,
    OcrRequest,
    ThumbnailsRequest,
    webhook_params,
)
from app.documents.sniff import ACCEPTED_DESCRIPTION
from app.documents.store import documents, save_upload
from app.documents.thumbnails import MAX_THUMBNAIL_PAGES, MAX_THUMBNAIL_SIZE
from app.jobs.schemas import JobAccepted
from app.jobs.submit import accept_job
from app.users.models import User

router = APIRouter(prefix="/documents", tags=["documents"], responses=responses.AUTHENTICATED)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentUploaded,
    responses={
        **responses.submits(UnsupportedMediaError),
        **responses.created("/documents/{document_id}"),
    },
)
def upload_document(
    session: SessionDep,
    user: StoringUser,
    response: Response,
    file: Annotated[
        UploadFile,
        File(
            description=f"The document: {ACCEPTED_DESCRIPTION}.",
            json_schema_extra=responses.NOT_EMPTY,
        ),
    ],
    ocr: Annotated[bool, Form(description="Start an OCR job.")] = False,
    thumbnails: Annotated[bool, Form(description="Start a thumbnails job.")] = False,
    webhook_url: Annotated[
        str | None,
        Form(
            min_length=8,
            max_length=2000,
            pattern=r"^https?://[^\s]+$",
            description="Called by each job the upload starts, once it is final (README: "
            "Webhooks); only with ocr or thumbnails.",
        ),
    ] = None,
    ocr_query: Annotated[bool, Query(alias="ocr", include_in_schema=False)] = False,
    thumbnails_query: Annotated[bool, Query(alias="thumbnails", include_in_schema=False)] = False,
) -> DocumentUploaded:
    """Store a document; its type comes from its content (never its name), then it is decoded
    to catch corrupt files. `ocr=true` / `thumbnails=true` (form fields or query) start jobs,
    each calling `webhook_url` (checked before the file is stored) when it is final."""
    settings = get_settings()
    starts = {"ocr": ocr or ocr_query, "thumbnails": thumbnails or thumbnails_query}
    # Before storing anything: a refused upload keeps no file.
    hook = webhook_params(webhook_url, settings, starts_jobs=any(starts.values()))
    if starts["ocr"]:
        languages.check_languages(settings, None)
    document = save_upload(
        settings=settings,
        session=session,
        owner=user,
        source=file.file,
        filename=file.filename or "",
    )
    documents.commit_saved(settings=settings, session=session, row=document)
    response.headers["Location"] = f"/documents/{document.id}"
    jobs: dict[str, JobAccepted] = {}
    for job_type in (name for name, wanted in starts.items() if wanted):
        jobs[job_type] = _start(session, user, document, job_type, hook)
    return DocumentUploaded(document=DocumentRead.model_validate(document), jobs=jobs)


@router.get("", response_model=DocumentList)
def list_documents(
    session: SessionDep,
    user: CurrentUser,
    limit: Limit = 50,
    offset: Offset = 0,
) -> DocumentList:
    page = documents.list_owned(session=session, owner=user, limit=limit, offset=offset)
    return DocumentList(
        items=[DocumentRead.model_validate(d) for d in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/{document_id}", response_model=DocumentRead, responses=responses.errors(NotFoundError)
)
def get_document(document_id: ResourceId, session: SessionDep, user: CurrentUser) -> DocumentRead:
    document = documents.get_owned(session=session, owner=user, upload_id=document_id)
    return DocumentRead.model_validate(document)


@router.delete(
    "/{document_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses.errors(NotFoundError),
)
def delete_document(document_id: ResourceId, session: SessionDep, user: CurrentUser) -> Response:
    """The upload and its file. The results of jobs already run on it are kept."""
    settings = get_settings()
    documents.delete_owned(settings=settings, session=session, owner=user, upload_id=document_id)
    thumbnail_store.delete_singles(settings, document_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{document_id}/thumbnails/{size}",
    response_class=Response,
    responses={
        200: {
            "description": "The thumbnail: PNG, or JPEG for a JPEG document.",
            "content": {"image/png": {}, "image/jpeg": {}},
        },
        **responses.errors(NotFoundError),
    },
)
def get_thumbnail(
    document_id: ResourceId,
    size: Annotated[
        int, Path(ge=1, le=MAX_THUMBNAIL_SIZE, description="One of THUMBNAIL_SIZES, in px.")
    ],
    session: SessionDep,
    user: CurrentUser,
    page: Annotated[int, Query(ge=1, le=MAX_THUMBNAIL_PAGES)] = 1,
) -> Response:
    """One thumbnail (its longest side `size` px) of a page, made by the latest thumbnails
    job of the document; 404 says which sizes exist or that no job made them yet."""
    document = documents.get_owned(session=session, owner=user, upload_id=document_id)
    data, media = thumbnail_store.read_single(get_settings(), document, size=size, page=page)
    return Response(content=data, media_type=media)


@router.post(
    "/{document_id}/ocr",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=responses.submits(NotFoundError, InvalidInputError),
)
def start_ocr(
    document_id: ResourceId,
    session: SessionDep,
    user: StoringUser,
    body: Annotated[OcrRequest | None, Body()] = None,
) -> JobAccepted:
    """Text of every page (job result) and a searchable PDF (job download); `webhook_url` is
    called when the job is final."""
    document = documents.get_owned(session=session, owner=user, upload_id=document_id)
    request = body or OcrRequest()
    settings = get_settings()
    languages.check_languages(settings, request.languages)
    extra = {"languages": request.languages} if request.languages else {}
    hook = webhook_params(request.webhook_url, settings)
    return _start(session, user, document, "ocr", {**extra, **hook})


@router.post(
    "/{document_id}/thumbnails",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobAccepted,
    responses=responses.submits(NotFoundError),
)
def start_thumbnails(
    document_id: ResourceId,
    session: SessionDep,
    user: StoringUser,
    body: Annotated[ThumbnailsRequest | None, Body()] = None,
) -> JobAccepted:
    """A ZIP of every THUMBNAIL_SIZES size (job download), listed in the job result;
    `webhook_url` is called when the job is final."""
    document = documents.get_owned(session=session, owner=user, upload_id=document_id)
    request = body or ThumbnailsRequest()
    hook = webhook_params(request.webhook_url, get_settings())
    return _start(session, user, document, "thumbnails", {"pages": request.pages, **hook})


def _start(
    session: SessionDep, user: User, document: Document, job_type: str, extra: dict[str, Any]
) -> JobAccepted:
    params = {
        "document_id": document.id,
        "document_key": documents.key_of(document),  # the worker may be on another host
        "mime_type": document.mime_type,
        "filename": document.filename,
        **extra,
    }
    accepted = accept_job(session=session, owner=user, job_type=job_type, params=params)
    return JobAccepted.model_validate(accepted)
