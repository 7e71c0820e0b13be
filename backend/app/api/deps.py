"""Shared route dependencies: a DB session per request and the authenticated caller."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Annotated, TypeVar
from weakref import WeakKeyDictionary

from anyio import CapacityLimiter, to_thread
from fastapi import Depends, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from app.core.config import get_settings
from app.core.security import hash_token
from app.db.base import utcnow
from app.db.session import session_factory, session_scope
from app.quotas.stored_bytes import check_stored_bytes, known_under
from app.users import token_cache
from app.users.models import User
from app.users.store import TokenExpired, user_for_token

_bearer = HTTPBearer(auto_error=False)

TOKEN_HELP = (
    "Send 'Authorization: Bearer <token>'; create a token with `reportctl token create NAME`."
)


def get_session() -> Iterator[Session]:
    """One unit of work per request: committed when the route returns, rolled back if not."""
    with session_scope() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def _missing_token() -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail=f"Missing bearer token. {TOKEN_HELP}",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _expired(expires_at: datetime) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail=f"Token expired at {expires_at.isoformat()}. {TOKEN_HELP}",
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def resolve_user(session: Session, token: str) -> User:
    """The user of a bearer token (remembered for `AUTH_CACHE_SECONDS`), or the 401."""
    try:
        user = user_for_token(
            session=session, token=token, cache_seconds=get_settings().AUTH_CACHE_SECONDS
        )
    except TokenExpired as exc:
        raise _expired(exc.expires_at) from None
    if user is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            detail=f"Invalid or revoked token. {TOKEN_HELP}",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


def remembered_caller(token: str) -> User | None:
    """The caller of `token` if this process remembers them (`user_for_token`'s cache): no
    I/O, so an event loop may ask. None: resolve them on a thread (`in_one_hop`). An
    expired token is the 401 here too, as on every cache hit."""
    ttl = get_settings().AUTH_CACHE_SECONDS
    hit = token_cache.recall(hash_token(token), ttl) if ttl > 0 else None
    if hit is None:
        return None
    user, expires_at = hit
    if expires_at is not None and expires_at <= utcnow():
        raise _expired(expires_at)
    return user


def optional_user(
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User | None:
    """The caller if a bearer token was sent (a wrong one is still a 401), else None."""
    if credentials is None:
        return None
    if credentials.scheme.lower() != "bearer":
        raise _missing_token()
    user = resolve_user(session, credentials.credentials)
    session.commit()
    return user


def require_user(user: User | None) -> User:
    if user is None:
        raise _missing_token()
    return user


async def current_user(user: Annotated[User | None, Depends(optional_user)]) -> User:
    """Async because it does no I/O: a sync dependency would cost a hop to a thread."""
    return require_user(user)


CurrentUser = Annotated[User, Depends(current_user)]
OptionalUser = Annotated[User | None, Depends(optional_user)]


async def storing_user(session: SessionDep, user: CurrentUser) -> User:
    """The caller, if they are under `QUOTA_STORED_BYTES`: for routes that store a file
    (uploads, and jobs whose result is one). Over it, 429. On the event loop while a
    remembered total answers; to a thread only for the sum."""
    settings = get_settings()
    if not known_under(user.id, settings):
        await run_in_threadpool(check_stored_bytes, session, user.id, settings)
    return user


StoringUser = Annotated[User, Depends(storing_user)]


async def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The bearer token of a request, unchecked (no I/O: on the event loop); none is a 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _missing_token()
    return credentials.credentials


BearerToken = Annotated[str, Depends(bearer_token)]
T = TypeVar("T")


def as_caller(token: str, work: Callable[[Session, User], T], storing: bool = False) -> T:
    """One unit of work for the caller of `token`: resolve them (from memory, usually), check
    the stored-bytes quota if the route stores, and run `work`, all in one session."""
    session = session_factory()()
    try:
        user = resolve_user(session, token)
        if storing:
            settings = get_settings()
            if not known_under(user.id, settings):
                check_stored_bytes(session, user.id, settings)
        result = work(session, user)
        # `session_scope`'s commit, skipped when nothing began a transaction: a caller known
        # from memory whose work read on its own connection (the status poll) used none.
        if session.in_transaction():
            session.commit()
        return result
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


async def in_one_hop(token: str, work: Callable[[Session, User], T]) -> T:
    """`as_caller` in one trip to the thread pool: what an async hot-path read awaits, in
    place of a hop for the session, one for the caller and one for the handler. (Submits
    go through `app.api.submits`, which takes the writers' turn.)"""
    return await to_thread.run_sync(as_caller, token, work, limiter=hot_path_limiter(False))


HOT_PATH_THREADS = 8
"""Hot-path units of work running at once in one process. Enough to overlap waits on the
database; fewer than anyio's 40 threads, which under load mostly pass the GIL round, and
than the SQLite pool's 5 + 10 connections (an overflow connection is opened, configured and
closed on every use)."""

SQLITE_WRITERS = 4
"""Submits writing at once in one process on SQLite. The database takes one writer at a
time; a few overlap one's commit with the others' work, more only wait in SQLite's busy
handler, whose sleeps grow to 100 ms: the submit's p99 (bench/README.md, "API hot paths")."""

_limiters: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[bool, CapacityLimiter]] = (
    WeakKeyDictionary()
)


def hot_path_limiter(writes: bool) -> CapacityLimiter:
    """This event loop's limiter for the hot paths' readers, or for its writers."""
    loop = asyncio.get_running_loop()
    limiters = _limiters.get(loop)
    if limiters is None:
        sqlite = get_settings().DATABASE_URL.startswith("sqlite")
        limiters = _limiters[loop] = {
            False: CapacityLimiter(HOT_PATH_THREADS),
            True: CapacityLimiter(SQLITE_WRITERS if sqlite else HOT_PATH_THREADS),
        }
    return limiters[writes]
