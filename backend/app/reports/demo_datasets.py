"""The built-in demo datasets: their schemas, report defaults, and a deterministic generator.

The generator is plain SQL over `range(n)`: every value is a hash of (row index, seed,
column), so a row depends only on its index, the row count and the seed. It is therefore
reproducible, parallel, and can be cut into any chunks, and it never exists in Python memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import numpy as np

from app.reports.errors import InvalidReportRequest
from app.reports.sql_quoting import quote_literal

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


def columns_of_demo(name: str) -> dict[str, str]:
    """Column name -> DuckDB type of a built-in dataset."""
    try:
        return dict(DEMO_DATASETS[name].columns)
    except KeyError:
        raise InvalidReportRequest(
            f"unknown demo dataset {name!r}; available: {', '.join(DEMO_DATASETS)}"
        ) from None


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
