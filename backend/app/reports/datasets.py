"""Datasets for heavy reports: the deterministic demo generator and uploaded CSV/Parquet files.

Everything is read through DuckDB, so builders never hold a whole dataset in Python memory:
aggregates run out of core inside DuckDB, and row-level output (Excel data sheets, the PDF
detail section) streams in chunks. The demo generator is plain SQL over `range(n)`: every
value is a hash of (row index, seed, column), so a row depends only on its index, the row
count and the seed. It is therefore reproducible, parallel, and can be cut into any chunks.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

# ----------------------------------------------------------------------------- column types

_INTEGER_TYPES = {
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
}
_FLOAT_TYPES = {"FLOAT", "DOUBLE", "REAL"}


def column_kind(duck_type: str) -> str:
    """Classify a DuckDB type name: integer, number, date, timestamp, time, boolean, string,
    or other (lists, structs, blobs... shown as text)."""
    t = duck_type.upper().strip()
    if t in _INTEGER_TYPES:
        return "integer"
    if t in _FLOAT_TYPES or t.startswith("DECIMAL") or t.startswith("NUMERIC"):
        return "number"
    if t == "DATE":
        return "date"
    if t.startswith("TIMESTAMP") or t == "DATETIME":
        return "timestamp"
    if t.startswith("TIME"):
        return "time"
    if t == "BOOLEAN":
        return "boolean"
    if t == "VARCHAR" or t.startswith("VARCHAR(") or t in {"UUID", "ENUM"} or t.startswith("ENUM"):
        return "string"
    return "other"


def is_numeric(duck_type: str) -> bool:
    return column_kind(duck_type) in {"integer", "number"}


def is_temporal(duck_type: str) -> bool:
    return column_kind(duck_type) in {"date", "timestamp"}


def quote_ident(name: str) -> str:
    """Quote a column name for SQL; names come from the dataset and may contain anything."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


# ----------------------------------------------------------------------------- demo datasets

DEMO_START = date(2023, 1, 1)
DEMO_DAYS = 1096  # 2023-01-01 .. 2025-12-31
REGIONS = ("North", "South", "East", "West", "Central")
REGION_WEIGHTS = (0.26, 0.22, 0.20, 0.18, 0.14)
CHANNELS = ("Online", "Retail", "Partner")
CHANNEL_WEIGHTS = (0.50, 0.35, 0.15)
# category -> (product nouns, price band low/high, cost ratio)
CATEGORIES: dict[str, tuple[tuple[str, ...], float, float, float]] = {
    "Electronics": (("Headphones", "Speaker", "Charger", "Camera", "Monitor"), 40, 900, 0.72),
    "Home": (("Lamp", "Kettle", "Blender", "Vacuum", "Fan"), 20, 400, 0.60),
    "Garden": (("Hose", "Shovel", "Planter", "Trimmer", "Grill"), 15, 600, 0.55),
    "Sports": (("Racket", "Helmet", "Yoga Mat", "Dumbbell", "Bicycle"), 15, 1200, 0.58),
    "Office": (("Chair", "Desk", "Notebook", "Stapler", "Printer"), 5, 700, 0.50),
    "Toys": (("Puzzle", "Robot", "Doll", "Blocks", "Kite"), 8, 150, 0.45),
    "Beauty": (("Serum", "Shampoo", "Perfume", "Lotion", "Brush"), 6, 180, 0.40),
    "Grocery": (("Coffee", "Tea", "Olive Oil", "Chocolate", "Honey"), 3, 60, 0.65),
}
VARIANTS = ("Lite", "Classic", "Plus", "Pro", "Max")
VARIANT_PRICE = (0.6, 0.8, 1.0, 1.3, 1.7)


def _products() -> list[tuple[str, str, float, float]]:
    """(product, category, base price, cost ratio) for the 200 demo products, fixed order."""
    out: list[tuple[str, str, float, float]] = []
    for category, (nouns, low, high, cost_ratio) in CATEGORIES.items():
        for n, noun in enumerate(nouns):
            base = low * (high / low) ** (n / (len(nouns) - 1))  # spread over the price band
            for variant, factor in zip(VARIANTS, VARIANT_PRICE, strict=True):
                out.append((f"{noun} {variant}", category, round(base * factor, 2), cost_ratio))
    return out


PRODUCTS = _products()

SALES_COLUMNS: dict[str, str] = {
    "date": "DATE",
    "region": "VARCHAR",
    "product": "VARCHAR",
    "category": "VARCHAR",
    "channel": "VARCHAR",
    "quantity": "INTEGER",
    "unit_price": "DOUBLE",
    "unit_cost": "DOUBLE",
    "revenue": "DOUBLE",
    "margin": "DOUBLE",
}


@dataclass(frozen=True)
class DemoDataset:
    """A built-in dataset: its schema, the report defaults that suit it, and a description."""

    name: str
    columns: dict[str, str]
    group_by: tuple[str, ...]
    measures: tuple[str, ...]
    date_column: str | None
    description: str


DEMO_DATASETS: dict[str, DemoDataset] = {
    "sales": DemoDataset(
        name="sales",
        columns=SALES_COLUMNS,
        group_by=("region", "category"),
        measures=("revenue", "margin", "quantity"),
        date_column="date",
        description="Synthetic retail sales: one row per order line, 2023-2025, "
        "5 regions, 8 categories, 200 products, 3 channels",
    ),
}

MAX_DEMO_ROWS = 10_000_000


def _uniform(k: int) -> str:
    """SQL for a uniform [0, 1) draw that depends only on (row, seed, k)."""
    # One hashed integer per (row, column), xor-ed with the seed: hash() of a single value
    # mixes well, while DuckDB's multi-argument hash() leaves neighbouring rows correlated.
    return f"((hash(xor(i * 32 + {k}, s)) >> 11)::DOUBLE / 9007199254740992.0)"


def _weighted_pick(u: str, names: Sequence[str], weights: Sequence[float]) -> str:
    cases, acc = [], 0.0
    for name, w in zip(names[:-1], weights[:-1], strict=True):
        acc += w
        cases.append(f"WHEN {u} < {acc!r} THEN {quote_literal(name)}")
    return f"CASE {' '.join(cases)} ELSE {quote_literal(names[-1])} END"


def _sql_list(values: Sequence[Any]) -> str:
    items = (quote_literal(v) if isinstance(v, str) else repr(v) for v in values)
    return "[" + ", ".join(items) + "]"


def demo_sql(name: str, rows: int, seed: int, start: int = 0, stop: int | None = None) -> str:
    """A SELECT producing rows [start, stop) of the demo dataset `name` with `rows` rows.

    Rows are in index order; dates grow with the index (an order log), volume grows over time
    (sqrt spacing), and ~0.2% of lines are bulk orders so outlier detection has real work.
    """
    if name not in DEMO_DATASETS:
        raise KeyError(f"unknown demo dataset {name!r}")
    stop = rows if stop is None else min(stop, rows)
    start = max(0, min(start, stop))
    names = _sql_list([p[0] for p in PRODUCTS])
    cats = _sql_list([p[1] for p in PRODUCTS])
    prices = _sql_list([p[2] for p in PRODUCTS])
    ratios = _sql_list([p[3] for p in PRODUCTS])
    n_products = len(PRODUCTS)
    # Popular products come first: index = floor(n * u^1.7) skews toward low indices; the
    # product list is interleaved by a fixed stride so popularity is spread over categories.
    stride = 37  # coprime with 200
    return f"""
        SELECT
            (DATE '{DEMO_START.isoformat()}'
              + LEAST({DEMO_DAYS - 1}, floor({DEMO_DAYS} * sqrt((i + {_uniform(1)}) / {rows}))
              )::INTEGER) AS "date",
            {_weighted_pick(_uniform(2), REGIONS, REGION_WEIGHTS)} AS region,
            {names}[p + 1] AS product,
            {cats}[p + 1] AS category,
            {_weighted_pick(_uniform(3), CHANNELS, CHANNEL_WEIGHTS)} AS channel,
            q AS quantity,
            unit_price,
            unit_cost,
            round(q * unit_price, 2) AS revenue,
            round(q * (unit_price - unit_cost), 2) AS margin
        FROM (
            SELECT i, s, p, q,
                round({prices}[p + 1] * (0.9 + 0.2 * {_uniform(4)})
                      * (1 - CASE WHEN {_uniform(5)} < 0.7 THEN 0
                                  WHEN {_uniform(5)} < 0.9 THEN 0.1 ELSE 0.25 END), 2)
                    AS unit_price,
                round({prices}[p + 1] * {ratios}[p + 1] * (0.95 + 0.1 * {_uniform(6)}), 2)
                    AS unit_cost
            FROM (
                SELECT i, s,
                    ((floor({n_products} * pow({_uniform(7)}, 1.7))::INTEGER * {stride})
                        % {n_products}) AS p,
                    (1 + floor(-ln(1 - {_uniform(8)}) * 2.5)::INTEGER)
                        * CASE WHEN {_uniform(9)} < 0.002 THEN 25 ELSE 1 END AS q
                FROM (SELECT range AS i, ({int(seed)}::BIGINT * 2654435761) AS s
                      FROM range({start}, {stop}))
            )
        )
    """


def demo_arrays(
    name: str, rows: int, seed: int, start: int = 0, stop: int | None = None
) -> dict[str, np.ndarray]:
    """Rows [start, stop) of a demo dataset as numpy arrays (for benchmarks and tests)."""
    con = duckdb.connect()
    try:
        return con.execute(demo_sql(name, rows, seed, start, stop)).fetchnumpy()
    finally:
        con.close()


# ----------------------------------------------------------------------------- opening data

DEFAULT_MEMORY_LIMIT_MB = 512


def connect(
    *,
    temp_dir: Path | None = None,
    memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
    threads: int | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that spills to `temp_dir` instead of growing past its memory limit."""
    # No external file cache: it keeps read file blocks in memory, and our files are read in
    # one or a few sequential scans, so it only grows the footprint.
    config: dict[str, Any] = {
        "memory_limit": f"{memory_limit_mb}MB",
        "enable_external_file_cache": False,
    }
    if threads:
        config["threads"] = threads
    con = duckdb.connect(config=config)
    if temp_dir is not None:
        temp_dir.mkdir(parents=True, exist_ok=True)
        con.execute(f"SET temp_directory = {quote_literal(str(temp_dir))}")
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
    con = connect(memory_limit_mb=256, threads=2)
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
class Dataset:
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

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_dataset(
    source: Mapping[str, Any],
    *,
    filters_sql: str = "",
    temp_dir: Path | None = None,
    memory_limit_mb: int = DEFAULT_MEMORY_LIMIT_MB,
) -> Dataset:
    """Open a dataset as view `data`, with the filters applied."""
    con = connect(temp_dir=temp_dir, memory_limit_mb=memory_limit_mb)
    try:
        where = f" WHERE {filters_sql}" if filters_sql else ""
        con.execute(f"CREATE VIEW data AS SELECT * FROM {source_sql(source)}{where}")
        described = con.execute("DESCRIBE SELECT * FROM data").fetchall()
        columns = {str(row[0]): str(row[1]) for row in described}
    except BaseException:
        con.close()
        raise
    return Dataset(con=con, columns=columns, description=describe_source(source))


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
    return f"Uploaded {str(source.get('format', '')).upper()} dataset '{name}'"


# ----------------------------------------------------------------------------- small helpers

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(title: str, suffix: str) -> str:
    """A download name from a report title (ASCII, no separators)."""
    stem = _SAFE_NAME.sub("-", title).strip("-._")[:80] or "report"
    return stem + suffix


def finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: turn them into None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
