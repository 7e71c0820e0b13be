"""One classification of what goes wrong in an attempt: retry it, or fail it with a reason.

Every backend (Celery, RQ, the embedded executor) runs jobs through `runner.run_job`, so
this one table decides for all of them:

- transient, retried after the policy's backoff (`Settings.retry_delay`): the database's
  connection (dropped, refused, timed out, locked), the object store (`StorageUnavailable`:
  5xx, throttling, no answer), a broker, the network, and the `OSError`s an operator fixes
  without touching the job (a full or read-only disk, permissions, I/O errors);
- permanent, the job fails and shows `reason`: bad input (`PermanentJobError`, a refusal of
  the store, a missing object) and bugs (anything else, logged with its traceback).

`retry_db` is the other half: the runner's own bookkeeping writes (claim, progress, finish)
ride out a dropped connection in place, so a database blip never costs an attempt.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import TypeVar

from sqlalchemy import exc as sa

from app.jobs.errors import PermanentJobError, TransientJobError
from app.storage.errors import TRANSIENT_ERRNOS, ObjectMissing, StorageError, StorageUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

DB_RETRY_SECONDS = 10.0
"""How long a bookkeeping write keeps trying after a dropped database connection."""


@dataclass(frozen=True)
class Transient:
    """Worth another attempt after the retry policy's backoff."""

    reason: str


@dataclass(frozen=True)
class Permanent:
    """Retrying cannot help; `reason` is shown on the job. `bug`: nobody expected it."""

    reason: str
    bug: bool = False


Fault = Transient | Permanent


def classify(exc: BaseException) -> Fault:
    """Transient or permanent, with the reason a person reads on the job."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, PermanentJobError):
        return Permanent(text)
    if isinstance(exc, TransientJobError):
        return Transient(text)
    if isinstance(exc, StorageUnavailable):
        return Transient(f"storage unavailable: {text}")
    if isinstance(exc, ObjectMissing):  # before OSError: it is a FileNotFoundError too
        return Permanent(text)
    if isinstance(exc, StorageError):
        return Permanent(f"storage error: {text}")
    if is_database_outage(exc):
        return Transient(f"database unavailable: {database_text(exc)}")
    if isinstance(exc, _broker_errors()):
        return Transient(f"broker unavailable: {type(exc).__name__}: {text}")
    if isinstance(exc, ConnectionError | TimeoutError):
        return Transient(f"{type(exc).__name__}: {text}")
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        where = f": {exc.filename}" if exc.filename else ""
        return Transient(f"{exc.strerror or os.strerror(exc.errno)}{where}")
    if isinstance(exc, sa.DBAPIError):  # a statement's bug: the driver's words, not the SQL
        return Permanent(f"internal error: {database_text(exc)}", bug=True)
    return Permanent(f"internal error: {type(exc).__name__}: {exc}", bug=True)


def is_transient(exc: BaseException) -> bool:
    return isinstance(classify(exc), Transient)


def is_database_outage(exc: BaseException) -> bool:
    """The database did not answer (connection dropped, refused, timed out, locked): not a
    bug in the statement, which `IntegrityError`, `ProgrammingError` and the like are."""
    if isinstance(exc, sa.DBAPIError):
        return bool(exc.connection_invalidated) or isinstance(
            exc, sa.OperationalError | sa.InterfaceError
        )
    return isinstance(exc, sa.DisconnectionError | sa.TimeoutError)


def database_text(exc: BaseException) -> str:
    """The driver's first line (`AdminShutdown: terminating connection ...`), not the SQL."""
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [""])[0]
    return f"{type(orig).__name__}: {first}" if first else type(orig).__name__


@cache
def _broker_errors() -> tuple[type[BaseException], ...]:
    """Broker clients' connection errors, when the libraries are installed (both are
    dependencies, but `jobs` must not fail to import without them)."""
    found: list[type[BaseException]] = []
    try:
        from kombu.exceptions import OperationalError as KombuOperationalError

        found.append(KombuOperationalError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from redis.exceptions import BusyLoadingError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        found += [RedisConnectionError, RedisTimeoutError, BusyLoadingError]
    except ImportError:  # pragma: no cover
        pass
    return tuple(found)


def retry_db(fn: Callable[[], T], *, what: str, budget: float = DB_RETRY_SECONDS) -> T:
    """`fn()`, called again after a database outage with a short growing pause, for up to
    `budget` seconds; then the error. Any other error is raised at once.

    For the runner's own writes, each one compare-and-set UPDATE (or one transaction): a
    repeat after a failed one is harmless. A connection that dropped after the commit but
    before its answer looks like a lost race on the repeat; callers check the row then.
    """
    deadline = time.monotonic() + budget
    pause = 0.05
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_database_outage(exc) or time.monotonic() + pause > deadline:
                raise
            log.warning("%s: %s; retrying in %.2f s", what, database_text(exc), pause)
        time.sleep(pause)
        pause = min(pause * 2, 1.0)
