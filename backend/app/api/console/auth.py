"""Who is using the console, and proof that a form post came from the console itself.

The API's own routes take a bearer token. A browser cannot send one on a plain link, an
`EventSource` or a form, so the console keeps the token in a cookie: `HttpOnly` (no script
reads it), `SameSite=Strict` (no other site's page sends it), scoped to `/ui` (the API's
routes never accept it, so they stay immune to cross-site requests), `Secure` over HTTPS.

Every state-changing console request is a POST that carries a CSRF token: an HMAC of the
session's token under the service's key, so it needs no server-side state, changes when the
user signs in with another token, and cannot be computed by a page that cannot read the
cookie. A POST whose `Origin` names another host is refused before anything else (the login
form, which has no session yet, relies on that and on SameSite).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session

from app.api.deps import SessionDep, resolve_user
from app.core.config import get_settings
from app.users.models import User

COOKIE = "report_console"
COOKIE_PATH = "/ui"
COOKIE_MAX_AGE = 12 * 3600
CSRF_FIELD = "csrf_token"


class SignInRequired(Exception):
    """A console page without a valid session: the handler sends the browser to sign in."""

    def __init__(self, next_path: str, reason: str = "") -> None:
        super().__init__(reason)
        self.next_path = next_path
        self.reason = reason


class ForeignRequest(Exception):
    """A POST from another origin, or without this session's CSRF token (HTTP 403)."""


def csrf_token(session_token: str) -> str:
    key = get_settings().link_key
    return hmac.new(key, b"console-csrf:" + session_token.encode(), hashlib.sha256).hexdigest()


def check_origin(request: Request) -> None:
    """Browsers send `Origin` on every POST; one naming another host is a cross-site post."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return  # no header: not a browser's cross-site form; SameSite and the token remain
    if urlsplit(origin).netloc != request.headers.get("host", ""):
        raise ForeignRequest(f"this form was posted from {origin}, not from the console")


def user_of_cookie(request: Request, session: Session) -> tuple[User, str]:
    """The signed-in user and their token, or `SignInRequired`."""
    token = request.cookies.get(COOKIE)
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not token:
        raise SignInRequired(path)
    try:
        user = resolve_user(session, token)
    except HTTPException as exc:
        raise SignInRequired(path, str(exc.detail)) from None
    session.commit()
    return user, token


class Visitor:
    """The console's caller: the user, and the CSRF token their forms carry."""

    def __init__(self, user: User, session_token: str) -> None:
        self.user = user
        self.csrf = csrf_token(session_token)


def console_visitor(request: Request, session: SessionDep) -> Visitor:
    return Visitor(*user_of_cookie(request, session))


ConsoleVisitor = Annotated[Visitor, Depends(console_visitor)]


async def checked_post(request: Request, visitor: ConsoleVisitor) -> Visitor:
    """For every console POST: same origin, and the form's CSRF token is this session's."""
    check_origin(request)
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    if not isinstance(sent, str) or not hmac.compare_digest(sent, visitor.csrf):
        raise ForeignRequest("the form's CSRF token is missing or stale: reload the page")
    return visitor


PostingVisitor = Annotated[Visitor, Depends(checked_post)]


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path only, never another site."""
    if value and value.startswith(f"{COOKIE_PATH}/") and not value.startswith("//"):
        return value
    return f"{COOKIE_PATH}/jobs"
