"""Dataset routes: upload a CSV or Parquet file to build heavy reports from; list; delete.

A report uses one with {"dataset": {"source": "upload", "dataset_id": ...}} in
POST /reports/heavy. Only the uploader sees a dataset; to anyone else it does not exist (404).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Response, UploadFile, status

from app.api import responses
from app.api.deps import CurrentUser, SessionDep, StoringUser
from app.api.paging import Limit, Offset
from app.api.params import ResourceId
from app.core.config import get_settings
from app.core.errors import NotFoundError
from app.reports.dataset_store import ACCEPTED_DESCRIPTION, datasets, save_upload
from app.reports.schemas import DatasetList, DatasetRead

router = APIRouter(prefix="/datasets", tags=["datasets"], responses=responses.AUTHENTICATED)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetRead,
    responses={**responses.submits(), **responses.created("/datasets/{dataset_id}")},
)
def upload_dataset(
    session: SessionDep,
    user: StoringUser,
    response: Response,
    file: Annotated[
        UploadFile, File(description=ACCEPTED_DESCRIPTION, json_schema_extra=responses.NOT_EMPTY)
    ],
    name: Annotated[str | None, Form(max_length=255, description="Display name.")] = None,
) -> DatasetRead:
    """Store a dataset. Its format comes from its content; it is read whole, so the schema
    returned (column types sniffed from every row) is what reports will see."""
    settings = get_settings()
    dataset = save_upload(
        settings=settings,
        session=session,
        owner=user,
        source=file.file,
        filename=file.filename or "",
        name=name,
    )
    datasets.commit_saved(settings=settings, session=session, row=dataset)
    response.headers["Location"] = f"/datasets/{dataset.id}"
    return DatasetRead.model_validate(dataset)


@router.get("", response_model=DatasetList)
def list_datasets(
    session: SessionDep,
    user: CurrentUser,
    limit: Limit = 50,
    offset: Offset = 0,
) -> DatasetList:
    page = datasets.list_owned(session=session, owner=user, limit=limit, offset=offset)
    return DatasetList(
        items=[DatasetRead.model_validate(d) for d in page.items],
        total=page.total,
        limit=limit,
        offset=offset,
    )


@router.get("/{dataset_id}", response_model=DatasetRead, responses=responses.errors(NotFoundError))
def get_dataset(dataset_id: ResourceId, session: SessionDep, user: CurrentUser) -> DatasetRead:
    dataset = datasets.get_owned(session=session, owner=user, upload_id=dataset_id)
    return DatasetRead.model_validate(dataset)


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=responses.errors(NotFoundError),
)
def delete_dataset(dataset_id: ResourceId, session: SessionDep, user: CurrentUser) -> Response:
    datasets.delete_owned(
        settings=get_settings(), session=session, owner=user, upload_id=dataset_id
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
