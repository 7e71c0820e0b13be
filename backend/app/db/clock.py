"""`db_now()`: the database's clock, as a SQL expression, for every time that spans processes.

Hosts' clocks drift; the database is the one clock every process shares. A heartbeat, a
claim's staleness test, a retry's due time and the relay's graces are all written and compared
in SQL with this expression, so a host running minutes ahead or behind neither reaps a healthy
job nor runs a retry early. It costs nothing: an expression in place of a bound parameter.

- PostgreSQL: `statement_timestamp()` (one value per statement, so a claim's `started_at` and
  `heartbeat_at` are equal), plus `make_interval(secs => ...)` for an offset.
- SQLite (one file, one host: the database clock is the host clock): `strftime(..., 'now')`
  in exactly the text format SQLAlchemy stores `UTCDateTime` in (`YYYY-MM-DD HH:MM:SS.ffffff`,
  UTC, no zone), so it compares as text with stored values. SQLite's clock has millisecond
  resolution; `'now'` is one value per statement.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Float, cast
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from app.db.base import UTCDateTime

_SQLITE_FORMAT = "'%Y-%m-%d %H:%M:%f'"


class db_now(FunctionElement[datetime]):
    """The database's current time, plus `seconds` if given (a number or a bind parameter;
    negative for the past)."""

    type = UTCDateTime()
    inherit_cache = True
    name = "db_now"

    def __init__(self, seconds: Any = None) -> None:
        self.seconds = seconds
        super().__init__(*(() if seconds is None else (cast(seconds, Float),)))


def _offset(element: db_now, compiler: SQLCompiler, **kw: Any) -> str | None:
    clauses = list(element.clauses)
    return compiler.process(clauses[0], **kw) if clauses else None


@compiles(db_now, "postgresql")
def _postgresql(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = _offset(element, compiler, **kw)
    if seconds is None:
        return "statement_timestamp()"
    return f"(statement_timestamp() + make_interval(secs => {seconds}))"


@compiles(db_now, "sqlite")
def _sqlite(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    seconds = _offset(element, compiler, **kw)
    modifier = "" if seconds is None else f", printf('%+.6f seconds', {seconds})"
    # %f is seconds with milliseconds; pad to the microseconds SQLAlchemy writes.
    return f"(strftime({_SQLITE_FORMAT}, 'now'{modifier}) || '000')"


@compiles(db_now)
def _other(element: db_now, compiler: SQLCompiler, **kw: Any) -> str:
    raise NotImplementedError(f"db_now() has no SQL for {compiler.dialect.name}")
