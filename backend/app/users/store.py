"""Users and their tokens (`reportctl token create|list|revoke`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.errors import InvalidInputError, NotFoundError
from app.core.security import hash_token, new_token
from app.db.base import utcnow
from app.users import token_cache
from app.users.models import ApiToken, User

_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class TokenExpired(Exception):
    """A known, unrevoked token past its `expires_at` (the API answers 401 "expired")."""

    def __init__(self, expires_at: datetime) -> None:
        super().__init__(f"token expired at {expires_at.isoformat()}")
        self.expires_at = expires_at


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m`, `2w`, `45s` -> a positive timedelta."""
    match = _DURATION.match(text)
    if match is None or int(match.group(1)) <= 0:
        raise InvalidInputError(
            f"invalid duration {text!r}: use a positive number and a unit, e.g. 30d, 12h, 90m, 2w"
        )
    return timedelta(seconds=int(match.group(1)) * _UNIT_SECONDS[match.group(2)])


@dataclass
class IssuedToken:
    """A new token (shown once) and what happened to its user."""

    token: str
    token_id: int
    user: User
    created_user: bool
    expires_at: datetime | None
    changed: list[str] = field(default_factory=list)
    """Attributes of an existing user changed (only with `update=True`)."""
    ignored: list[str] = field(default_factory=list)
    """Attributes asked for an existing user but left as they were (no `update`)."""


def issue_token(
    *,
    session: Session,
    name: str,
    admin: bool = False,
    email: str | None = None,
    expires_in: timedelta | None = None,
    update: bool = False,
) -> IssuedToken:
    """Create the user `name` if needed and a new token for it.

    An existing user keeps its admin flag and e-mail unless `update` is true: a token for an
    existing name must not silently promote it or redirect its mail. What was asked but
    ignored is returned in `ignored`, so the caller can say so.
    """
    user = session.scalar(select(User).where(User.name == name))
    created = user is None
    changed: list[str] = []
    ignored: list[str] = []
    if user is None:
        user = User(name=name, is_admin=admin, email=email)
        session.add(user)
        session.flush()
    else:
        wanted: list[tuple[str, object]] = []
        if admin and not user.is_admin:
            wanted.append(("is_admin", True))
        if email and email != user.email:
            wanted.append(("email", email))
        for attribute, value in wanted:
            if update:
                setattr(user, attribute, value)
                changed.append(attribute)
            else:
                ignored.append(attribute)
    expires_at = utcnow() + expires_in if expires_in is not None else None
    token = new_token()
    row = ApiToken(user_id=user.id, token_hash=hash_token(token), expires_at=expires_at)
    session.add(row)
    session.flush()
    return IssuedToken(
        token=token,
        token_id=row.id,
        user=user,
        created_user=created,
        expires_at=expires_at,
        changed=changed,
        ignored=ignored,
    )


def create_token(
    *,
    session: Session,
    name: str,
    admin: bool = False,
    email: str | None = None,
    expires_in: timedelta | None = None,
    update: bool = False,
) -> str:
    """`issue_token`, returning only the token (shown once)."""
    return issue_token(
        session=session, name=name, admin=admin, email=email, expires_in=expires_in, update=update
    ).token


@dataclass(frozen=True)
class TokenInfo:
    """What `reportctl token list` shows: never the token, nor its digest."""

    id: int
    user: str
    admin: bool
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None


def list_tokens(*, session: Session, user: str | None = None) -> list[TokenInfo]:
    query = select(ApiToken, User).join(User, User.id == ApiToken.user_id).order_by(ApiToken.id)
    if user is not None:
        query = query.where(User.name == user)
    return [
        TokenInfo(
            id=token.id,
            user=owner.name,
            admin=owner.is_admin,
            created_at=token.created_at,
            last_used_at=token.last_used_at,
            expires_at=token.expires_at,
            revoked_at=token.revoked_at,
        )
        for token, owner in session.execute(query).tuples()
    ]


class TokenNotFound(NotFoundError):
    pass


def revoke_token(*, session: Session, token_id: int) -> bool:
    """Revoke a token by id; False if it was already revoked."""
    row = session.get(ApiToken, token_id)
    if row is None:
        raise TokenNotFound(f"no token with id {token_id} (see `reportctl token list`)")
    if row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.flush()
    token_cache.forget_all()  # this process at once; others within AUTH_CACHE_SECONDS
    return True


def user_for_token(*, session: Session, token: str, cache_seconds: float = 0) -> User | None:
    """The user of a valid token; None if unknown or revoked; `TokenExpired` if expired.

    With `cache_seconds`, a token resolved that recently answers from memory without a
    query (`token_cache`: a revocation elsewhere is seen within that time)."""
    digest = hash_token(token)
    if cache_seconds > 0 and (hit := token_cache.recall(digest, cache_seconds)) is not None:
        remembered, expires_at = hit
        if expires_at is not None and expires_at <= utcnow():
            raise TokenExpired(expires_at)
        return remembered
    row = session.scalar(
        select(ApiToken).where(ApiToken.token_hash == digest, ApiToken.revoked_at.is_(None))
    )
    if row is None:
        return None
    now = utcnow()
    # The API host's clock against an expiry set by the CLI's: skew of seconds is irrelevant
    # for lifetimes of days.
    if row.expires_at is not None and row.expires_at <= now:
        raise TokenExpired(row.expires_at)
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        row.last_used_at = now  # coarse, so reads do not turn into a write per request
    user = session.get(User, row.user_id)
    if user is not None and cache_seconds > 0:
        token_cache.remember(digest, user, row.expires_at)
    return user
