"""Storing a dataset upload: what is specific to datasets on top of `app.uploads.store`.

The upload store streams the bytes to a temporary file and keeps only what is accepted. A
dataset's format is told from its content, never its name, and DuckDB reads it whole: CSV
column types are sniffed from every row, and the rows are written to a Parquet file, which is
what is kept and what reports read. Only a file that parsed completely is stored, so a stored
one cannot fail a report later on a bad line.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import duckdb
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import InvalidInputError, NotFoundError
from app.core.files import display_name
from app.reports.datasets import connect
from app.reports.models import Dataset
from app.reports.sql_quoting import quote_literal
from app.uploads.store import Kept, Received, UploadStore
from app.users.models import User

SNIFF_BYTES = 64 * 1024
MAX_COLUMNS = 1_000
PARQUET_MAGIC = b"PAR1"
PARQUET_MIME = "application/vnd.apache.parquet"
ACCEPTED_DESCRIPTION = "CSV (UTF-8, with a header row) or Parquet"


class DatasetRejected(InvalidInputError):
    """An upload we will not keep as a dataset; the message says why."""


class DatasetNotFound(NotFoundError):
    """Absent, or someone else's (which must look the same)."""

    def __init__(
        self, dataset_id: str, message: str = "No dataset with this id for this token."
    ) -> None:
        super().__init__(message)
        self.dataset_id = dataset_id


datasets = UploadStore(Dataset, folder="datasets", tmp_prefix="dataset", not_found=DatasetNotFound)
absolute_path = datasets.absolute_path


def save_upload(
    *,
    settings: Settings,
    session: Session,
    owner: User,
    source: BinaryIO,
    filename: str,
    name: str | None = None,
) -> Dataset:
    """Store the upload as Parquet and add its row to `session` (commit with
    `datasets.commit_saved`).

    Raises `UploadTooLarge` or `EmptyUpload` (`app.uploads.store`), or `DatasetRejected`, each
    with a message for the client.
    """

    def accept(upload: Received) -> Kept[Dataset]:
        fmt = sniff_format(upload.path)
        converted = upload.scratch(".parquet")
        columns, rows = convert_to_parquet(
            upload.path, fmt, converted, temp_dir=upload.scratch(".duckdb-tmp")
        )
        dataset = Dataset(
            name=display_name(name or filename, f"dataset.{fmt}"),
            format=fmt,
            size_bytes=upload.size,
            columns=columns,
            row_count=rows,
        )
        return Kept(file=converted, suffix=".parquet", row=dataset, content_type=PARQUET_MIME)

    return datasets.save(
        settings=settings, session=session, owner=owner, source=source, accept=accept
    )


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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
