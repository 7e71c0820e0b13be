"""Users and their tokens (created by `reportctl token create`)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.core.security import hash_token, new_token
from app.db.base import utcnow
from app.users.models import ApiToken, User


def create_token(
    *, session: Session, name: str, admin: bool = False, email: str | None = None
) -> str:
    """Create the user `name` if needed and return a new token for it (shown once)."""
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        user = User(name=name, is_admin=admin, email=email)
        session.add(user)
        session.flush()
    else:
        if admin:
            user.is_admin = True
        if email:
            user.email = email
    token = new_token()
    session.add(ApiToken(user_id=user.id, token_hash=hash_token(token)))
    session.flush()
    return token


def user_for_token(*, session: Session, token: str) -> User | None:
    row = session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    )
    if row is None:
        return None
    now = utcnow()
    if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 60:
        row.last_used_at = now  # coarse, so reads do not turn into a write per request
    return session.get(User, row.user_id)
