"""Signing in to the console with an API token, and out again."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.api.console import auth
from app.api.console.render import page
from app.api.deps import SessionDep, resolve_user

router = APIRouter()


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse(f"{auth.COOKIE_PATH}/jobs", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None, reason: str | None = None) -> Response:
    return page(request, "login.html", None, next=auth.safe_next(next), error=reason)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    session: SessionDep,
    token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    """A valid token becomes the session cookie; a wrong one shows the form again (401)."""
    auth.check_origin(request)
    token = token.strip()
    try:
        if not token:
            raise HTTPException(401, "Paste an API token to sign in.")
        resolve_user(session, token)
    except HTTPException as exc:
        return page(
            request, "login.html", None, 401, next=auth.safe_next(next), error=str(exc.detail)
        )
    response = RedirectResponse(auth.safe_next(next), status_code=303)
    response.set_cookie(
        auth.COOKIE,
        token,
        max_age=auth.COOKIE_MAX_AGE,
        path=auth.COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout(visitor: auth.PostingVisitor) -> RedirectResponse:
    response = RedirectResponse(f"{auth.COOKIE_PATH}/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path=auth.COOKIE_PATH, httponly=True, samesite="strict")
    return response
