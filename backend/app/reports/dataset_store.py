"""Uploaded datasets: store, sniff, list, delete; and resolving a heavy report's dataset.

An upload streams to a temporary file on the storage volume (counted and cut off at
MAX_UPLOAD_BYTES), its format is told from its content, never its name, and DuckDB reads it
whole: CSV column types are sniffed from every row, and the rows are written to a Parquet file,
which is what reports read. Only a file that parsed completely is renamed into place and
recorded, so a refused upload leaves nothing behind and a stored one cannot fail a report
later on a bad line.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import duckdb
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.core.files import TooLarge, copy_limited, display_name, fsync_dir, resolve_under
from app.models import User, new_id
from app.reports.datasets import connect, quote_literal
from app.reports.models import Dataset
from app.reports.spec import (
    DemoDatasetRef,
    HeavyReportRequest,
    InvalidReportRequest,
    columns_of_demo,
    validate_request,
)

SNIFF_BYTES = 64 * 1024
MAX_COLUMNS = 1_000
PARQUET_MAGIC = b"PAR1"
ACCEPTED_DESCRIPTION = "CSV (UTF-8, with a header row) or Parquet"


class DatasetRejected(Exception):
    """An upload we will not keep; `status_code` and `message` are for the client."""

    status_code = 422

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UploadTooLarge(DatasetRejected):
    status_code = 413


class DatasetNotFound(InvalidReportRequest):
    """Absent, or someone else's (which must look the same). HTTP 404."""

    status_code = 404

    def __init__(self, dataset_id: str) -> None:
        super().__init__(f"no dataset with id {dataset_id!r} for this token")
        self.dataset_id = dataset_id


def datasets_root(settings: Settings) -> Path:
    return settings.storage_root / "datasets"


def absolute_path(settings: Settings, dataset: Dataset) -> Path:
    """Where the file is; refuses a row whose path would leave the storage root."""
    return resolve_under(settings.storage_root, dataset.path, "dataset")


# ----------------------------------------------------------------------------- upload


def save_upload(
    *,
    settings: Settings,
    session: Session,
    owner: User,
    source: BinaryIO,
    filename: str,
    name: str | None = None,
) -> Dataset:
    """Store the upload and add its row to `session` (the caller commits).

    Raises `DatasetRejected` (413 or 422) with a message for the client.
    """
    dataset_id = new_id()
    tmp_dir = settings.storage_root / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    upload = tmp_dir / f"dataset-{token}.part"
    converted = tmp_dir / f"dataset-{token}.parquet"
    relative = Path("datasets") / dataset_id[:2] / f"{dataset_id}.parquet"
    final = settings.storage_root / relative
    spill = tmp_dir / f"dataset-{token}.duckdb-tmp"
    try:
        size = _copy_limited(source, upload, settings.MAX_UPLOAD_BYTES)
        fmt = sniff_format(upload)
        columns, rows = convert_to_parquet(upload, fmt, converted, temp_dir=spill)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(converted, final)
        fsync_dir(final.parent)
    except BaseException:
        converted.unlink(missing_ok=True)
        raise
    finally:
        upload.unlink(missing_ok=True)
        shutil.rmtree(spill, ignore_errors=True)
    dataset = Dataset(
        id=dataset_id,
        owner_id=owner.id,
        name=_display_name(name or filename, fmt),
        format=fmt,
        path=str(relative),
        size_bytes=size,
        columns=columns,
        row_count=rows,
    )
    session.add(dataset)
    session.flush()
    return dataset


def sniff_format(path: Path) -> str:
    """ "parquet" or "csv", from the bytes; anything else is refused."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
        handle.seek(max(0, path.stat().st_size - 4))
        tail = handle.read(4)
    if head.startswith(PARQUET_MAGIC):
        if tail != PARQUET_MAGIC:
            raise DatasetRejected("the Parquet file is truncated (no footer)")
        return "parquet"
    if b"\x00" in head:
        raise DatasetRejected(f"this is not a dataset file: expected {ACCEPTED_DESCRIPTION}")
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a character cut at the sniff boundary is fine
            raise DatasetRejected(
                f"the CSV is not UTF-8 (invalid byte at offset {exc.start}); save it as UTF-8"
            ) from None
    if not head.strip():
        raise DatasetRejected("the file is empty or blank")
    return "csv"


def convert_to_parquet(
    source: Path, fmt: str, target: Path, *, temp_dir: Path | None = None
) -> tuple[dict[str, str], int]:
    """Read the whole file with DuckDB and write it as Parquet; returns (columns, row count).

    CSV types are first sniffed from a sample (fast, parallel parse); if any later value does
    not fit them the conversion fails, and is redone with types sniffed from every row
    (single-threaded, ~3x slower). Either way what is stored parsed completely.
    """
    con = connect(temp_dir=temp_dir, memory_limit_mb=256)
    try:
        try:
            return _convert(con, source, fmt, target, full_sniff=False)
        except (duckdb.ConversionException, duckdb.InvalidInputException):
            if fmt != "csv":
                raise
            return _convert(con, source, fmt, target, full_sniff=True)
    except duckdb.Error as exc:
        target.unlink(missing_ok=True)
        kind = "CSV" if fmt == "csv" else "Parquet file"
        raise DatasetRejected(f"the {kind} could not be read: {_first_line(exc)}") from None
    finally:
        con.close()


def _convert(
    con: duckdb.DuckDBPyConnection, source: Path, fmt: str, target: Path, *, full_sniff: bool
) -> tuple[dict[str, str], int]:
    if fmt == "csv":
        sample = ", sample_size = -1" if full_sniff else ""
        src = f"read_csv({quote_literal(str(source))}, header = true, null_padding = true{sample})"
    else:
        src = f"read_parquet({quote_literal(str(source))})"
    described = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    columns = {str(row[0]): str(row[1]) for row in described}
    if not columns:
        raise DatasetRejected("the file has no columns")
    if len(columns) > MAX_COLUMNS:
        raise DatasetRejected(
            f"the file has {len(columns):,} columns; at most {MAX_COLUMNS:,} are accepted"
        )
    con.execute(
        f"COPY (SELECT * FROM {src}) TO {quote_literal(str(target))} "
        "(FORMAT parquet, ROW_GROUP_SIZE 32768)"
    )
    counted = con.execute(
        f"SELECT count(*) FROM read_parquet({quote_literal(str(target))})"
    ).fetchall()
    rows = int(counted[0][0])
    if rows == 0:
        target.unlink(missing_ok=True)
        raise DatasetRejected("the file has no data rows")
    return columns, rows


# ----------------------------------------------------------------------------- queries


def get_owned(*, session: Session, owner_id: int, dataset_id: str) -> Dataset:
    """The caller's dataset; someone else's is as absent as a missing one."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or dataset.owner_id != owner_id:
        raise DatasetNotFound(dataset_id)
    return dataset


def list_owned(
    *, session: Session, owner_id: int, limit: int, offset: int
) -> tuple[list[Dataset], int]:
    query = select(Dataset).where(Dataset.owner_id == owner_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    items = session.scalars(
        query.order_by(Dataset.created_at.desc(), Dataset.id).limit(limit).offset(offset)
    ).all()
    return list(items), int(total)


def delete_owned(*, settings: Settings, session: Session, owner_id: int, dataset_id: str) -> Path:
    """Delete the row (the caller commits) and return the file to unlink once committed, so a
    failed commit never leaves a row without its file. Reports already queued on the dataset
    fail with a readable error."""
    dataset = get_owned(session=session, owner_id=owner_id, dataset_id=dataset_id)
    path = absolute_path(settings, dataset)
    session.delete(dataset)
    session.flush()
    return path


def prepare_heavy_params(
    *, session: Session, owner_id: int, request: HeavyReportRequest
) -> dict[str, Any]:
    """Resolve the request's dataset, check it against the columns, return the job params.

    Raises `DatasetNotFound` (404) for a dataset that is not the caller's, and
    `InvalidReportRequest` (422, the message names the column) for a bad request.
    Both carry `status_code`.
    """
    if isinstance(request.dataset, DemoDatasetRef):
        return validate_request(request, columns_of_demo(request.dataset.name))
    dataset = get_owned(session=session, owner_id=owner_id, dataset_id=request.dataset.dataset_id)
    params = validate_request(request, dict(dataset.columns), dataset_label=dataset.name)
    params.update(
        dataset_path=str(absolute_path(get_settings(), dataset)),
        dataset_format="parquet",  # what is stored, whatever was uploaded
        dataset_name=dataset.name,
    )
    return params


# ----------------------------------------------------------------------------- helpers


def _copy_limited(source: BinaryIO, dest: Path, limit: int) -> int:
    try:
        size, _ = copy_limited(source, dest, limit)
    except TooLarge as exc:
        raise UploadTooLarge(str(exc)) from None
    if size == 0:
        raise DatasetRejected("the uploaded file is empty")
    return size


def _display_name(filename: str, fmt: str) -> str:
    return display_name(filename, f"dataset.{fmt}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
