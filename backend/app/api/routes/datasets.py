"""Dataset routes: upload a CSV or Parquet file to build heavy reports from; list; delete.

A report uses one with {"dataset": {"source": "upload", "dataset_id": ...}} in
POST /reports/heavy. Only the uploader sees a dataset; to anyone else it does not exist (404).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, Response, UploadFile, status
from pydantic import BaseModel

from app.api.deps import CurrentUser, SessionDep
from app.core.config import get_settings
from app.reports import dataset_store
from app.reports.datasets import column_kind
from app.reports.models import Dataset

router = APIRouter(prefix="/datasets", tags=["datasets"])

NOT_FOUND = "No dataset with this id for this token."


class ColumnRead(BaseModel):
    name: str
    type: str
    """The DuckDB type, e.g. VARCHAR, DOUBLE, DATE, DECIMAL(10,2)."""
    kind: str
    """integer, number, date, timestamp, time, boolean, string or other."""


class DatasetRead(BaseModel):
    dataset_id: str
    name: str
    format: str
    size_bytes: int
    row_count: int
    columns: list[ColumnRead]
    created_at: datetime

    @classmethod
    def from_row(cls, dataset: Dataset) -> DatasetRead:
        return cls(
            dataset_id=dataset.id,
            name=dataset.name,
            format=dataset.format,
            size_bytes=dataset.size_bytes,
            row_count=dataset.row_count,
            columns=[
                ColumnRead(name=n, type=t, kind=column_kind(t)) for n, t in dataset.columns.items()
            ],
            created_at=dataset.created_at,
        )


class DatasetList(BaseModel):
    items: list[DatasetRead]
    total: int
    limit: int
    offset: int


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DatasetRead)
def upload_dataset(
    session: SessionDep,
    user: CurrentUser,
    response: Response,
    file: Annotated[UploadFile, File(description=dataset_store.ACCEPTED_DESCRIPTION)],
    name: Annotated[str | None, Form(max_length=255, description="Display name.")] = None,
) -> DatasetRead:
    """Store a dataset. Its format comes from its content; it is read whole, so the schema
    returned (column types sniffed from every row) is what reports will see."""
    settings = get_settings()
    try:
        dataset = dataset_store.save_upload(
            settings=settings,
            session=session,
            owner=user,
            source=file.file,
            filename=file.filename or "",
            name=name,
        )
    except dataset_store.DatasetRejected as exc:
        raise HTTPException(exc.status_code, detail=exc.message) from None
    try:
        session.commit()
    except BaseException:
        dataset_store.absolute_path(settings, dataset).unlink(missing_ok=True)
        raise
    response.headers["Location"] = f"/datasets/{dataset.id}"
    return DatasetRead.from_row(dataset)


@router.get("", response_model=DatasetList)
def list_datasets(
    session: SessionDep,
    user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> DatasetList:
    items, total = dataset_store.list_owned(
        session=session, owner_id=user.id, limit=limit, offset=offset
    )
    return DatasetList(
        items=[DatasetRead.from_row(d) for d in items], total=total, limit=limit, offset=offset
    )


@router.get("/{dataset_id}", response_model=DatasetRead)
def get_dataset(dataset_id: str, session: SessionDep, user: CurrentUser) -> DatasetRead:
    try:
        dataset = dataset_store.get_owned(session=session, owner_id=user.id, dataset_id=dataset_id)
    except dataset_store.DatasetNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND) from None
    return DatasetRead.from_row(dataset)


@router.delete("/{dataset_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_dataset(dataset_id: str, session: SessionDep, user: CurrentUser) -> Response:
    try:
        path = dataset_store.delete_owned(
            settings=get_settings(), session=session, owner_id=user.id, dataset_id=dataset_id
        )
    except dataset_store.DatasetNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=NOT_FOUND) from None
    session.commit()
    path.unlink(missing_ok=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
