"""A short-lived, per-process memory of which user a token belongs to.

Most requests of a client carry the same token, and resolving it is a query (and, once a
minute, a write of `last_used_at`). An entry lives `AUTH_CACHE_SECONDS` (5 s by default): a
token revoked by `reportctl token revoke` in another process stops working within that time
(in this process at once: `revoke_token` forgets every entry). An expiry is checked on every
hit, so an expired token is refused at its second, cached or not. Only valid tokens are
remembered (never a miss, so guessing cannot fill the memory), keyed by the token's SHA-256,
and the memory holds at most `_MAX_ENTRIES` tokens.

Each hit returns a fresh detached `User` copy, so no two requests share an ORM instance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import make_transient_to_detached

from app.users.models import User

_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class _Entry:
    user_id: int
    name: str
    email: str | None
    is_admin: bool
    created_at: datetime
    expires_at: datetime | None
    stored: float


_entries: dict[str, _Entry] = {}


def remember(digest: str, user: User, expires_at: datetime | None) -> None:
    if len(_entries) >= _MAX_ENTRIES:
        _entries.clear()
    _entries[digest] = _Entry(
        user_id=user.id,
        name=user.name,
        email=user.email,
        is_admin=user.is_admin,
        created_at=user.created_at,
        expires_at=expires_at,
        stored=time.monotonic(),
    )


def recall(digest: str, ttl: float) -> tuple[User, datetime | None] | None:
    """A copy of the remembered user and the token's expiry, if remembered < `ttl` s ago."""
    entry = _entries.get(digest)
    if entry is None:
        return None
    if time.monotonic() - entry.stored >= ttl:
        _entries.pop(digest, None)
        return None
    user = User(
        id=entry.user_id,
        name=entry.name,
        email=entry.email,
        is_admin=entry.is_admin,
        created_at=entry.created_at,
    )
    make_transient_to_detached(user)
    return user, entry.expires_at


def forget_all() -> None:
    _entries.clear()
