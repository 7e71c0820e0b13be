"""The web console at `/ui`: a person's jobs with live progress, a report form, schedules,
and for admins everyone's jobs and the queues. Server-rendered pages with one small script;
every asset ships in the package (`app/static/console/`), so it works offline.

`install(app)` adds the routes and what turns a missing session or a foreign post into a
page: the sign-in form, or a 403.
"""

from __future__ import annotations

from collections.abc import Callable
from inspect import isawaitable
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response

from app.api.console import auth, jobs, queues, reports, schedules, signin
from app.api.console.render import page
from app.core.errors import DomainError

router = APIRouter(prefix=auth.COOKIE_PATH, include_in_schema=False)
for module in (signin, jobs, reports, schedules, queues):
    router.include_router(module.router)


async def _sign_in(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, auth.SignInRequired)
    if request.url.path.endswith("/events") or request.method != "GET":
        return Response(exc.reason or "sign in first", status_code=401)
    target = f"{auth.COOKIE_PATH}/login?next={quote(exc.next_path)}"
    if exc.reason:
        target += f"&reason={quote(exc.reason)}"
    return RedirectResponse(target, status_code=303)


async def _foreign(request: Request, exc: Exception) -> Response:
    return page(request, "error.html", None, 403, message=str(exc))


def _as_page(app: FastAPI, kind: type[Exception], describe: Callable[[Exception], str]) -> None:
    """On a console page an error of `kind` becomes a page with the API's status and
    `describe(exc)`; elsewhere the API's JSON answer stays."""
    api_answer = app.exception_handlers[kind]

    async def handler(request: Request, exc: Exception) -> Response:
        answer = api_answer(request, exc)
        response = await answer if isawaitable(answer) else answer
        if not request.url.path.startswith(f"{auth.COOKIE_PATH}/"):
            return response
        return page(request, "error.html", None, response.status_code, message=describe(exc))

    app.add_exception_handler(kind, handler)


def _invalid(exc: Exception) -> str:
    assert isinstance(exc, RequestValidationError)
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'][1:]) or 'request'}: {e['msg']}" for e in exc.errors()
    )


def install(app: FastAPI) -> None:
    """After `install_error_handlers`: a domain error on a console page (someone else's job,
    say) or a refused field becomes a page with the same status."""
    app.include_router(router)
    app.add_exception_handler(auth.SignInRequired, _sign_in)
    app.add_exception_handler(auth.ForeignRequest, _foreign)
    _as_page(app, DomainError, lambda exc: str(getattr(exc, "message", exc)))
    _as_page(app, RequestValidationError, _invalid)
