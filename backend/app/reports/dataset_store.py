"""Storing a dataset upload: what is specific to datasets on top of `app.uploads.store`.

The upload store streams the bytes to a temporary file and keeps only what is accepted. A
dataset's format is told from its content, never its name, and DuckDB reads it whole: CSV
column types are sniffed from every row, and the rows are written to a Parquet file, which is
what is kept and what reports read. Only a file that parsed completely is stored, so a stored
one cannot fail a report later on a bad line.

Sizes are checked before the work they would cost: a Parquet file's row count comes from its
footer before any row is read, a CSV's longest line from a byte scan before DuckDB parses it,
and the columns from the schema; no more than DATASET_MAX_ROWS rows are ever converted.
"""

from __future__ import annotations

from dataclasses import dataclass
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
PARQUET_MAGIC = b"PAR1"
PARQUET_MIME = "application/vnd.apache.parquet"
ACCEPTED_DESCRIPTION = "CSV (UTF-8, with a header row) or Parquet"


class DatasetRejected(InvalidInputError):
    """An upload we will not keep as a dataset; the message says why."""


@dataclass(frozen=True)
class DatasetLimits:
    """What one uploaded dataset may hold; the defaults are the settings' defaults."""

    max_rows: int = 20_000_000
    """DATASET_MAX_ROWS"""
    max_columns: int = 1_000
    """DATASET_MAX_COLUMNS"""
    max_line_bytes: int = 1024 * 1024
    """DATASET_MAX_LINE_BYTES: the longest CSV line."""

    @classmethod
    def of(cls, settings: Settings) -> DatasetLimits:
        return cls(
            max_rows=settings.DATASET_MAX_ROWS,
            max_columns=settings.DATASET_MAX_COLUMNS,
            max_line_bytes=settings.DATASET_MAX_LINE_BYTES,
        )


DEFAULT_LIMITS = DatasetLimits()


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
            upload.path,
            fmt,
            converted,
            temp_dir=upload.scratch(".duckdb-tmp"),
            limits=DatasetLimits.of(settings),
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


def check_line_lengths(path: Path, max_bytes: int) -> None:
    """Refuse a file with a line longer than `max_bytes`, scanning bytes only (fast).

    Read in blocks of `max_bytes`: a line inside one block is shorter than the block, so
    only the lines that cross a block boundary need measuring.
    """
    last_newline = -1
    offset = 0
    with path.open("rb") as handle:
        while block := handle.read(max_bytes):
            first = block.find(b"\n")
            end = offset + (first if first != -1 else len(block))
            if end - last_newline - 1 > max_bytes:
                raise DatasetRejected(
                    f"the CSV has a line longer than {max_bytes:,} bytes (starting at byte "
                    f"{last_newline + 1:,}); the limit is DATASET_MAX_LINE_BYTES"
                )
            if first != -1:
                last_newline = offset + block.rfind(b"\n")
            offset += len(block)


def convert_to_parquet(
    source: Path,
    fmt: str,
    target: Path,
    *,
    temp_dir: Path | None = None,
    limits: DatasetLimits = DEFAULT_LIMITS,
) -> tuple[dict[str, str], int]:
    """Read the whole file with DuckDB and write it as Parquet; returns (columns, row count).

    CSV types are first sniffed from a sample (fast, parallel parse); if any later value does
    not fit them the conversion fails, and is redone with types sniffed from every row
    (single-threaded, ~3x slower). Either way what is stored parsed completely.
    """
    if fmt == "csv":
        check_line_lengths(source, limits.max_line_bytes)
    con = connect(temp_dir=temp_dir, memory_limit_mb=256, allow=[source.parent, target.parent])
    try:
        try:
            return _convert(con, source, fmt, target, limits, full_sniff=False)
        except (duckdb.ConversionException, duckdb.InvalidInputException):
            if fmt != "csv":
                raise
            return _convert(con, source, fmt, target, limits, full_sniff=True)
    except duckdb.Error as exc:
        target.unlink(missing_ok=True)
        kind = "CSV" if fmt == "csv" else "Parquet file"
        raise DatasetRejected(f"the {kind} could not be read: {_first_line(exc)}") from None
    finally:
        con.close()


def _convert(
    con: duckdb.DuckDBPyConnection,
    source: Path,
    fmt: str,
    target: Path,
    limits: DatasetLimits,
    *,
    full_sniff: bool,
) -> tuple[dict[str, str], int]:
    quoted = quote_literal(str(source))
    if fmt == "csv":
        sample = ", sample_size = -1" if full_sniff else ""
        src = (
            f"read_csv({quoted}, header = true, null_padding = true, "
            f"max_line_size = {int(limits.max_line_bytes)}{sample})"
        )
    else:
        src = f"read_parquet({quoted})"
        # The footer's count, before a single row is decoded.
        declared = con.execute(
            f"SELECT coalesce(sum(num_rows), 0) FROM parquet_file_metadata({quoted})"
        ).fetchall()
        _check_rows(int(declared[0][0]), limits, exact=True)
    described = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
    columns = {str(row[0]): str(row[1]) for row in described}
    if not columns:
        raise DatasetRejected("the file has no columns")
    if len(columns) > limits.max_columns:
        raise DatasetRejected(
            f"the file has {len(columns):,} columns; the limit is {limits.max_columns:,} "
            "(DATASET_MAX_COLUMNS)"
        )
    # One row past the limit is enough to know it is over: never convert more.
    con.execute(
        f"COPY (SELECT * FROM {src} LIMIT {int(limits.max_rows) + 1}) "
        f"TO {quote_literal(str(target))} (FORMAT parquet, ROW_GROUP_SIZE 32768)"
    )
    counted = con.execute(
        f"SELECT count(*) FROM read_parquet({quote_literal(str(target))})"
    ).fetchall()
    rows = int(counted[0][0])
    if rows == 0 or rows > limits.max_rows:
        target.unlink(missing_ok=True)
    if rows == 0:
        raise DatasetRejected("the file has no data rows")
    _check_rows(rows, limits)
    return columns, rows


def _check_rows(rows: int, limits: DatasetLimits, *, exact: bool = False) -> None:
    """Refuse more than DATASET_MAX_ROWS rows (`exact`: `rows` is the true count, not the
    limit plus one)."""
    if rows > limits.max_rows:
        count = f"{rows:,}" if exact else f"more than {limits.max_rows:,}"
        raise DatasetRejected(
            f"the file has {count} rows; the limit is {limits.max_rows:,} (DATASET_MAX_ROWS)"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
