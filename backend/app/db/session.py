"""Engine and sessions. SQLite is tuned for several processes (WAL, busy timeout)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import get_settings

_engines: dict[tuple[str, bool, bool], Engine] = {}
_factories: dict[tuple[str, bool], sessionmaker[Session]] = {}


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str, *, durable: bool = True, pinged: bool = True) -> Engine:
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    if durable:
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    # The workers' engine: commits skip the wait for the WAL flush (see session_scope), and
    # each statement is its own transaction (every hot-path unit of work is one UPDATE, so
    # BEGIN and COMMIT would be two extra round trips). A pooled connection is pinged at
    # checkout: one the server dropped (a restart, `pg_terminate_backend`, an idle timeout)
    # is replaced before a job's write meets it, instead of failing that write. Unpinged
    # (`pinged=False`): for reads that find a dropped connection themselves and run again
    # (`PreparedStatement`), saving the ping's round trip on every status poll.
    return create_engine(
        url,
        isolation_level="AUTOCOMMIT",
        pool_pre_ping=pinged,
        pool_recycle=300,
        pool_size=10,
        max_overflow=20,
        connect_args={"options": "-c synchronous_commit=off"},
    )


def get_engine(url: str | None = None, *, durable: bool = True, pinged: bool = True) -> Engine:
    url = url or get_settings().DATABASE_URL
    durable = durable or not url.startswith("postgresql")  # SQLite: one engine either way
    pinged = pinged or durable  # only the workers' PostgreSQL engine comes unpinged too
    key = (url, durable, pinged)
    engine = _engines.get(key)
    if engine is None:
        engine = _engines[key] = make_engine(url, durable=durable, pinged=pinged)
    return engine


def session_factory(url: str | None = None, *, durable: bool = True) -> sessionmaker[Session]:
    url = url or get_settings().DATABASE_URL
    key = (url, durable)
    factory = _factories.get(key)
    if factory is None:
        factory = _factories[key] = sessionmaker(
            bind=get_engine(url, durable=durable), expire_on_commit=False
        )
    return factory


@contextmanager
def session_scope(*, durable: bool = True) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error.

    `durable=False` is for single-statement writes that a crash may lose without harm
    because the job machinery redoes them (status marks, heartbeats: a lost `completed`
    reverts to `started` and the reaper re-runs the idempotent job). On PostgreSQL each
    statement commits on its own without waiting for the WAL flush; job creation always
    stays durable. Never use it for a unit of work of several statements.
    """
    session = session_factory(durable=durable)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def warm_up(*, connect: bool) -> None:
    """Pay a worker's one-time database costs before its first job, not during it.

    In a parent about to fork a pool (`connect=False`) this imports the driver once for all
    children; in a child (`connect=True`) it also opens the first pooled connection. A
    database that is down is not an error here: the first job retries.
    """
    engine = get_engine(durable=False)
    if connect:
        try:
            with engine.connect():
                pass
        except Exception as exc:  # best effort: the job path reports it
            logging.getLogger(__name__).warning("database not reachable yet: %s", exc)


def dispose_engines() -> None:
    """Forget pooled connections, e.g. in a forked child that must not share its parent's."""
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()
    _factories.clear()


def forget_engines(url: str) -> None:
    """Close and drop the engines of one database (a test database about to be dropped)."""
    for key in [key for key in _engines if key[0] == url]:
        _engines.pop(key).dispose()
    for factory_key in [key for key in _factories if key[0] == url]:
        _factories.pop(factory_key)
