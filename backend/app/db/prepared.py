"""Prepared statements: a Core statement compiled once, run on a pooled driver connection.

A job's own writes (claim, heartbeat, outcome) are one small UPDATE each, and the API's
status poll one SELECT by primary key. Through an ORM session they cost about 0.2 ms of
SQLAlchemy bookkeeping apiece (session and transaction objects, an execution context,
per-call parameter processing, for a read the identity map), several times the statement
itself. Here SQLAlchemy still writes the SQL and supplies each column type's converters, once
per dialect; a call only converts its parameters, executes, fetches and commits.

Driver errors come out as SQLAlchemy's `DBAPIError` subclasses, like everywhere else, and a
dropped server connection resets the pool, as an engine would.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.sql.selectable import Select

from app.db import loop_connections
from app.db.session import get_engine

Converter = Callable[[Any], Any]
Statement = UpdateBase | Select[Any]


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
    types: tuple[Any, ...]
    """Each result column's SQL type, in this dialect."""


def _compile(statement: Statement, dialect: Dialect) -> _Compiled:
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
        types=tuple(column.type.dialect_impl(dialect) for column in returned),
    )


class PreparedStatement:
    """One INSERT/UPDATE/DELETE (optionally with RETURNING) or SELECT, each call its own
    transaction.

    Runs on the engine of `get_engine(durable=...)`: `durable=False` is for writes a crash may
    lose without harm (see `session_scope`), and for single-statement reads (on PostgreSQL an
    autocommit connection: no BEGIN and COMMIT round trips around the SELECT).

    `pinged=False`, for a SELECT only: no ping at checkout (on PostgreSQL a round trip before
    every statement); a connection the server dropped fails the read itself, which `first`
    then runs once more on a new connection.
    """

    def __init__(self, statement: Statement, *, durable: bool = False, pinged: bool = True) -> None:
        self.statement = statement
        self.durable = durable
        self.pinged = pinged
        self._by_dialect: dict[str, _Compiled] = {}
        self._results: dict[str, tuple[Converter | None, ...]] = {}

    def rowcount(self, params: Mapping[str, Any]) -> int:
        """Execute and commit; the number of rows the statement matched."""
        return self._execute(params, fetch=False)[0]

    def returning(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Execute and commit; the first RETURNING row by column name, or None."""
        return self._execute(params, fetch=True)[1]

    def first(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """A SELECT's first row by column name, or None."""
        try:
            return self._execute(params, fetch=True)[1]
        except DBAPIError as exc:
            if self.pinged or not exc.connection_invalidated:
                raise
        return self._execute(params, fetch=True)[1]  # the pool was reset: a new connection

    def _converters(
        self, compiled: _Compiled, dialect: Dialect, description: Any
    ) -> tuple[Converter | None, ...]:
        """Each result column's converter, from the driver's type codes of the first result
        (psycopg's Float converter depends on it), then reused."""
        converters = self._results.get(dialect.name)
        if converters is None:
            converters = self._results[dialect.name] = tuple(
                kind.result_processor(dialect, column[1])
                for kind, column in zip(compiled.types, description, strict=True)
            )
        return converters

    def _compiled(self, engine: Engine) -> _Compiled:
        name = engine.dialect.name
        compiled = self._by_dialect.get(name)
        if compiled is None:
            compiled = self._by_dialect[name] = _compile(self.statement, engine.dialect)
        return compiled

    def first_at_once(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """`first` without waiting, for an event loop: on SQLite, on this thread's own
        read-only connection with no busy timeout. A read in WAL mode takes no lock and
        finds its pages in memory: tens of microseconds, far less than a trip to a thread and
        back (two GIL hand-offs under load). If it would wait after all, `WouldWait`, as at
        once on any other database (a network round trip): the caller goes to a thread."""
        engine = get_engine(durable=self.durable)
        connection = _own_sqlite_reader(engine)
        if connection is None:
            raise WouldWait("not a SQLite file")
        compiled = self._compiled(engine)
        args = _arguments(compiled, params)
        try:
            cursor = connection.execute(compiled.sql, args)
            rows = cursor.fetchall()
        except sqlite3.OperationalError as exc:
            # The primary code: SQLITE_BUSY_RECOVERY, _SNAPSHOT... are busy too.
            if (exc.sqlite_errorcode & 0xFF) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise WouldWait(str(exc)) from exc
            raise DBAPIError.instance(
                compiled.sql, args, exc, sqlite3.Error, dialect=engine.dialect
            ) from exc
        if not rows:
            return None
        converters = self._converters(compiled, engine.dialect, cursor.description)
        return _named(compiled, converters, rows[0])

    async def first_on_loop(self, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """`first` for an event loop without a thread: SQLite's `first_at_once`, and on
        PostgreSQL an await on the loop's own connections (`loop_connections`). Any other
        database: `WouldWait`."""
        engine = get_engine(durable=self.durable, pinged=self.pinged)
        if engine.dialect.name != "postgresql":
            return self.first_at_once(params)
        compiled = self._compiled(engine)
        args = _arguments(compiled, params)
        try:
            rows, description = await loop_connections.fetch(engine.url, compiled.sql, args)
        except engine.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(
                compiled.sql, args, exc, engine.dialect.loaded_dbapi.Error, dialect=engine.dialect
            ) from exc
        if not rows:
            return None
        converters = self._converters(compiled, engine.dialect, description)
        return _named(compiled, converters, rows[0])

    def _execute(
        self, params: Mapping[str, Any], *, fetch: bool
    ) -> tuple[int, dict[str, Any] | None]:
        engine = get_engine(durable=self.durable, pinged=self.pinged)
        compiled = self._compiled(engine)
        args = _arguments(compiled, params)
        connection = engine.raw_connection()
        cursor = None
        try:
            cursor = connection.cursor()
            cursor.execute(compiled.sql, args)
            rows = cursor.fetchall() if fetch else ()
            count = cursor.rowcount
            description = cursor.description
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
        converters = self._converters(compiled, engine.dialect, description)
        return len(rows), _named(compiled, converters, rows[0])


class WouldWait(Exception):
    """The statement cannot run at once here (a lock to wait for, or not SQLite)."""


def _arguments(compiled: _Compiled, params: Mapping[str, Any]) -> Any:
    """The driver's parameters: the constants and `params`, each through its converter."""
    missing = compiled.required - params.keys()
    if missing:
        raise TypeError(f"missing parameters: {', '.join(sorted(missing))}")
    values = {**compiled.constants, **params}
    for name, convert in compiled.bind.items():
        values[name] = convert(values[name])
    return tuple(values[name] for name in compiled.names) if compiled.positional else values


def _named(
    compiled: _Compiled, converters: tuple[Converter | None, ...], row: Sequence[Any]
) -> dict[str, Any]:
    return {
        name: convert(value) if convert else value
        for name, convert, value in zip(compiled.columns, converters, row, strict=True)
    }


_readers = threading.local()


def _own_sqlite_reader(engine: Engine) -> sqlite3.Connection | None:
    """This thread's read-only connection to the engine's SQLite file (None for another
    database, or an in-memory one that a second connection would not see). It never waits
    for a lock (`busy_timeout` 0) and cannot write (`query_only`). One per engine: a new
    engine (`dispose_engines`, another database) gets a new connection, and the old one
    closes with its engine."""
    if engine.dialect.name != "sqlite":
        return None
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    known: WeakKeyDictionary[Engine, sqlite3.Connection] | None = getattr(_readers, "known", None)
    if known is None:
        known = _readers.known = WeakKeyDictionary()
    connection = known.get(engine)
    if connection is None:
        connection = sqlite3.connect(path, timeout=0, isolation_level=None)
        connection.execute("PRAGMA busy_timeout=0")
        connection.execute("PRAGMA query_only=1")
        known[engine] = connection
    return connection
