"""Prepared statements: a Core statement compiled once, run on a pooled driver connection.

A job's own writes (claim, heartbeat, outcome) are one small UPDATE each. Through an ORM
session they cost about 0.2 ms of SQLAlchemy bookkeeping apiece (session and transaction
objects, an execution context, per-call parameter processing), several times the statement
itself. Here SQLAlchemy still writes the SQL and supplies each column type's converters, once
per dialect; a call only converts its parameters, executes, fetches and commits.

Driver errors come out as SQLAlchemy's `DBAPIError` subclasses, like everywhere else, and a
dropped server connection resets the pool, as an engine would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import UpdateBase

from app.db.session import get_engine

Converter = Callable[[Any], Any]


@dataclass(frozen=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    """Every bind parameter, in the driver's order (positional styles) or any order (named)."""
    constants: dict[str, Any]
    """Values fixed in the statement (e.g. the statuses of an IN list)."""
    required: frozenset[str]
    bind: dict[str, Converter]
    positional: bool
    columns: tuple[str, ...]
    result: tuple[Converter | None, ...]


def _compile(statement: UpdateBase, dialect: Dialect) -> _Compiled:
    compiled = statement.compile(dialect=dialect)
    defaults = compiled.params
    names = tuple(compiled.positiontup or defaults)
    required = frozenset(name for name in names if compiled.binds[name].required)
    bind: dict[str, Converter] = {}
    for name in names:
        converter = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        if converter is not None:
            bind[name] = converter
    returned = list(statement.exported_columns)
    return _Compiled(
        sql=compiled.string,
        names=names,
        constants={name: defaults[name] for name in names if name not in required},
        required=required,
        bind=bind,
        positional=dialect.positional,
        columns=tuple(str(column.key) for column in returned),
        result=tuple(
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in returned
        ),
    )


class PreparedStatement:
    """One INSERT/UPDATE/DELETE, optionally with RETURNING, each call its own transaction.

    Runs on the engine of `get_engine(durable=...)`: `durable=False` is for writes a crash may
    lose without harm (see `session_scope`).
    """

    def __init__(self, statement: UpdateBase, *, durable: bool = False) -> None:
        self.statement = statement
        self.durable = durable
        self._by_dialect: dict[str, _Compiled] = {}

    def rowcount(self, params: Mapping[str, Any]) -> int:
        """Execute and commit; the number of rows the statement matched."""
        return self._execute(params, fetch=False)[0]

    def returning(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Execute and commit; the first RETURNING row by column name, or None."""
        return self._execute(params, fetch=True)[1]

    def _compiled(self, engine: Engine) -> _Compiled:
        name = engine.dialect.name
        compiled = self._by_dialect.get(name)
        if compiled is None:
            compiled = self._by_dialect[name] = _compile(self.statement, engine.dialect)
        return compiled

    def _execute(
        self, params: Mapping[str, Any], *, fetch: bool
    ) -> tuple[int, dict[str, Any] | None]:
        engine = get_engine(durable=self.durable)
        compiled = self._compiled(engine)
        missing = compiled.required - params.keys()
        if missing:
            raise TypeError(f"missing parameters: {', '.join(sorted(missing))}")
        values = {**compiled.constants, **params}
        for name, convert in compiled.bind.items():
            values[name] = convert(values[name])
        args: Any = (
            tuple(values[name] for name in compiled.names) if compiled.positional else values
        )
        connection = engine.raw_connection()
        cursor = None
        try:
            cursor = connection.cursor()
            cursor.execute(compiled.sql, args)
            rows = cursor.fetchall() if fetch else ()
            count = cursor.rowcount
            cursor.close()
            connection.commit()
        except engine.dialect.loaded_dbapi.Error as exc:
            dropped = engine.dialect.is_disconnect(exc, connection.dbapi_connection, cursor)
            if dropped:
                connection.invalidate(exc)
                engine.dispose(close=False)  # the other pooled connections died with it
            raise DBAPIError.instance(
                compiled.sql,
                args,
                exc,
                engine.dialect.loaded_dbapi.Error,
                connection_invalidated=dropped,
                dialect=engine.dialect,
            ) from exc
        finally:
            connection.close()
        if not fetch:
            return count, None
        if not rows:
            return 0, None
        row = {
            name: convert(value) if convert else value
            for name, convert, value in zip(compiled.columns, compiled.result, rows[0], strict=True)
        }
        return len(rows), row
