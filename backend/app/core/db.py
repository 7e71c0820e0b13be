"""Engine and sessions. SQLite is tuned for several processes (WAL, busy timeout)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import get_settings

_engines: dict[str, Engine] = {}
_factories: dict[str, sessionmaker[Session]] = {}


def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def get_engine(url: str | None = None) -> Engine:
    url = url or get_settings().DATABASE_URL
    engine = _engines.get(url)
    if engine is None:
        engine = _engines[url] = make_engine(url)
    return engine


def session_factory(url: str | None = None) -> sessionmaker[Session]:
    url = url or get_settings().DATABASE_URL
    factory = _factories.get(url)
    if factory is None:
        factory = _factories[url] = sessionmaker(bind=get_engine(url), expire_on_commit=False)
    return factory


@contextmanager
def session_scope(*, durable: bool = True) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error.

    `durable=False` is for writes that a crash may lose without harm because the job
    machinery redoes them (status marks, heartbeats: a lost `completed` reverts to `started`
    and the reaper re-runs the idempotent job). On PostgreSQL it skips the commit's wait for
    the WAL flush; job creation always stays durable.
    """
    session = session_factory()()
    if not durable and session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit = off"))
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_engines() -> None:
    """Forget pooled connections, e.g. in a forked child that must not share its parent's."""
    for engine in _engines.values():
        engine.dispose(close=False)
    _engines.clear()
    _factories.clear()
