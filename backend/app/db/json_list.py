"""`json_append(column, item)`: a JSON list column with one item added, computed in SQL.

Two processes may add to one job's history at once (the attempt that finishes the job, and
an older one that was taken over and says so). Read-modify-write from a stale copy would
drop one entry; an append in the UPDATE itself keeps both. A NULL column counts as `[]`.

- PostgreSQL: through `jsonb` (`||` appends; the column stays `json`).
- SQLite: `json_insert(..., '$[#]', ...)` (SQLite 3.31+).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class json_append(FunctionElement[Any]):
    """`column` (a JSON list, or NULL) followed by `item` (a JSON-typed expression)."""

    type = JSON()
    inherit_cache = True
    name = "json_append"

    def __init__(self, column: Any, item: Any) -> None:
        super().__init__(column, item)


def _parts(element: json_append, compiler: SQLCompiler, **kw: Any) -> tuple[str, str]:
    column, item = (compiler.process(clause, **kw) for clause in element.clauses)
    return column, item


@compiles(json_append, "postgresql")
def _postgresql(element: json_append, compiler: SQLCompiler, **kw: Any) -> str:
    column, item = _parts(element, compiler, **kw)
    return (
        f"CAST(COALESCE(CAST({column} AS jsonb), CAST('[]' AS jsonb)) "
        f"|| jsonb_build_array(CAST({item} AS jsonb)) AS json)"
    )


@compiles(json_append, "sqlite")
def _sqlite(element: json_append, compiler: SQLCompiler, **kw: Any) -> str:
    column, item = _parts(element, compiler, **kw)
    return f"json_insert(COALESCE({column}, '[]'), '$[#]', json({item}))"


@compiles(json_append)
def _other(element: json_append, compiler: SQLCompiler, **kw: Any) -> str:
    raise NotImplementedError(f"json_append() has no SQL for {compiler.dialect.name}")
