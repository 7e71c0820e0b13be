"""Opening a heavy report's dataset in DuckDB: a demo generator or an uploaded file, filtered.

Everything is read through DuckDB, so builders never hold a whole dataset in Python memory:
aggregates run out of core inside DuckDB, and row-level output (Excel data sheets, the PDF
detail section) streams in chunks. An `OpenedDataset` is one connection whose view `data` is
the filtered rows; its queries keep reporting progress, and so stay cancellable, while
DuckDB works.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from app.reports.demo_datasets import DEMO_DATASETS, demo_sql
from app.reports.sql_quoting import quote_literal

DEFAULT_MEMORY_LIMIT_MB = 512


def connect(
    *,
    temp_dir: Path | None = None,
    memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
    threads: int | None = None,
    allow: Iterable[Path] = (),
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills to `temp_dir` instead of growing past its memory limit.

    Locked down whatever SQL it is later given: it reads and writes files only under the
    directories in `allow` (and `temp_dir`), never a URL, and installs or loads no extension.
    External access is switched off last, after which it cannot be switched back on, nor can
    the allowed directories or the temp directory change.
    """
    # No external file cache: it keeps read file blocks in memory, and our files are read in
    # one or a few sequential scans, so it only grows the footprint.
    config: dict[str, Any] = {
        "memory_limit": f"{memory_limit_mb}MB",
        "enable_external_file_cache": False,
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }
    if threads:
        config["threads"] = threads
    con = duckdb.connect(config=config)
    try:
        directories = list(allow)
        if temp_dir is not None:
            temp_dir.mkdir(parents=True, exist_ok=True)
            con.execute(f"SET temp_directory = {quote_literal(str(temp_dir))}")
            directories.append(temp_dir)
        if directories:
            # A trailing slash, so `/scratch/a` does not also allow `/scratch/ab...`.
            listed = ", ".join(quote_literal(str(d).rstrip("/") + "/") for d in directories)
            con.execute(f"SET allowed_directories = [{listed}]")
        con.execute("SET enable_external_access = false")
    except BaseException:
        con.close()
        raise
    return con


def source_sql(source: Mapping[str, Any]) -> str:
    """A FROM-able SQL expression for a resolved dataset description (see `heavy.py`)."""
    kind = source.get("source")
    if kind == "demo":
        return f"({demo_sql(source['name'], int(source['rows']), int(source.get('seed', 0)))})"
    path = str(source["path"])
    fmt = source.get("format")
    if fmt == "parquet":
        return f"read_parquet({quote_literal(path)})"
    if fmt == "csv":
        types = source.get("columns")
        extra = ""
        if types:
            # Pin the types found at upload, so a late odd value fails loudly, not silently.
            pairs = ", ".join(f"{quote_literal(k)}: {quote_literal(v)}" for k, v in types.items())
            extra = f", types = {{{pairs}}}"
        return f"read_csv({quote_literal(path)}, header = true, sample_size = 20480{extra})"
    raise ValueError(f"unknown dataset format {fmt!r}")


def sniff_file(path: Path, fmt: str) -> tuple[dict[str, str], int]:
    """Column types and row count of an uploaded file, read fully once so bad files fail here.

    CSV types are sniffed from the whole file (sample_size = -1), so a stray value deep in
    the file cannot break a report later.
    """
    con = connect(memory_limit_mb=256, threads=2, allow=[path.parent])
    try:
        if fmt == "csv":
            src = f"read_csv({quote_literal(str(path))}, header = true, sample_size = -1)"
        elif fmt == "parquet":
            src = f"read_parquet({quote_literal(str(path))})"
        else:
            raise ValueError(f"unknown dataset format {fmt!r}")
        described = con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()
        columns = {str(row[0]): str(row[1]) for row in described}
        row_count = int(con.execute(f"SELECT count(*) FROM {src}").fetchone()[0])  # type: ignore[index]
        return columns, row_count
    finally:
        con.close()


Tick = Callable[[float], None]
"""Called about every 0.2 s while a query runs, with DuckDB's own percent (or -1)."""


@dataclass
class OpenedDataset:
    """An opened dataset: a DuckDB connection whose view `data` is the filtered rows."""

    con: duckdb.DuckDBPyConnection
    columns: dict[str, str]
    description: str
    _row_count: int | None = field(default=None, repr=False)

    def row_count(self, tick: Tick | None = None) -> int:
        if self._row_count is None:
            self._row_count = int(self.query("SELECT count(*) FROM data", tick=tick)[0][0])
        return self._row_count

    def query(self, sql: str, *, tick: Tick | None = None) -> list[tuple[Any, ...]]:
        """Run a query to completion; while it runs, call `tick` so progress keeps flowing and a
        cancellation raised by `tick` interrupts DuckDB within a fraction of a second."""
        if tick is None:
            return self.con.execute(sql).fetchall()
        cur = self.con.cursor()
        cur.execute("SET enable_progress_bar = true")
        cur.execute("SET enable_progress_bar_print = false")
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["rows"] = cur.execute(sql).fetchall()
            except BaseException as exc:  # re-raised in the calling thread
                box["error"] = exc

        worker = threading.Thread(target=work, name="duckdb-query", daemon=True)
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.2)
                if worker.is_alive():
                    tick(cur.query_progress())
        except BaseException:
            cur.interrupt()
            worker.join()
            raise
        finally:
            if not worker.is_alive():
                cur.close()
        if "error" in box:
            raise box["error"]
        rows: list[tuple[Any, ...]] = box["rows"]
        return rows

    def iter_chunks(self, sql: str, chunk_rows: int = 20_000) -> Iterator[list[tuple[Any, ...]]]:
        """Stream a query's rows in chunks: DuckDB produces them as they are fetched, so memory
        stays flat whatever the row count."""
        cur = self.con.cursor()
        try:
            cur.execute(sql)
            while True:
                chunk = cur.fetchmany(chunk_rows)
                if not chunk:
                    return
                yield chunk
        finally:
            cur.close()

    def materialize(self, path: Path, *, tick: Tick | None = None) -> None:
        """Write the filtered rows once to a Parquet file and read from it from now on.

        For builders that scan many times: a columnar scan costs a fraction of regenerating
        demo rows or parsing CSV, and the file is on disk, so memory stays flat.
        """
        # Small row groups: the writer buffers one per thread, so this bounds memory.
        self.query(
            f"COPY (SELECT * FROM data) TO {quote_literal(str(path))} "
            "(FORMAT parquet, ROW_GROUP_SIZE 32768)",
            tick=tick,
        )
        self.con.execute(
            f"CREATE OR REPLACE VIEW data AS SELECT * FROM read_parquet({quote_literal(str(path))})"
        )
        self._row_count = None

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> OpenedDataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_dataset(
    source: Mapping[str, Any],
    *,
    filters_sql: str = "",
    temp_dir: Path | None = None,
    memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
) -> OpenedDataset:
    """Open a dataset as view `data`, with the filters applied.

    The connection reads only the dataset's own directory and writes only beside `temp_dir`
    (where `materialize` puts its file).
    """
    allow = [Path(str(source["path"])).parent] if source.get("source") != "demo" else []
    if temp_dir is not None:
        allow.append(temp_dir.parent)
    con = connect(temp_dir=temp_dir, memory_limit_mb=memory_limit_mb, allow=allow)
    try:
        where = f" WHERE {filters_sql}" if filters_sql else ""
        con.execute(f"CREATE VIEW data AS SELECT * FROM {source_sql(source)}{where}")
        described = con.execute("DESCRIBE SELECT * FROM data").fetchall()
        columns = {str(row[0]): str(row[1]) for row in described}
    except BaseException:
        con.close()
        raise
    return OpenedDataset(con=con, columns=columns, description=describe_source(source))


def describe_source(source: Mapping[str, Any]) -> str:
    """One line for title pages: what the rows are."""
    if source.get("source") == "demo":
        demo = DEMO_DATASETS.get(str(source.get("name")))
        label = demo.description if demo else str(source.get("name"))
        return (
            f"Demo dataset '{source.get('name')}' ({int(source['rows']):,} rows, seed "
            f"{source.get('seed', 0)}): {label}"
        )
    name = source.get("display_name") or Path(str(source.get("path", "dataset"))).name
    # The format the user uploaded (a CSV is stored as Parquet; older jobs do not say).
    fmt = source.get("uploaded_as") or source.get("format", "")
    return f"Uploaded {str(fmt).upper()} dataset '{name}'"
