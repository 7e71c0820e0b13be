"""The web console at `/ui`: a person's jobs with live progress, a report form, schedules,
and for admins everyone's jobs and the queues. Server-rendered pages with one small script;
every asset ships in the package (`app/static/console/`), so it works offline.

`install(app)` adds the routes and what turns a missing session or a foreign post into a
page: the sign-in form, or a 403.
"""

from __future__ import annotations

from inspect import isawaitable
from urllib.parse import quote

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response

from app.api.console import auth, jobs, queues, reports, schedules, signin
from app.api.console.render import page
from app.api.errors import status_of
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


def install(app: FastAPI) -> None:
    """After `install_error_handlers`: a domain error on a console page (someone else's job,
    say) becomes a page with the same status; elsewhere the API's JSON answer stays."""
    app.include_router(router)
    app.add_exception_handler(auth.SignInRequired, _sign_in)
    app.add_exception_handler(auth.ForeignRequest, _foreign)
    api_answer = app.exception_handlers[DomainError]

    async def domain_error(request: Request, exc: Exception) -> Response:
        if not request.url.path.startswith(f"{auth.COOKIE_PATH}/") or not isinstance(
            exc, DomainError
        ):
            answer = api_answer(request, exc)
            return await answer if isawaitable(answer) else answer
        return page(request, "error.html", None, status_of(exc), message=exc.message)

    app.add_exception_handler(DomainError, domain_error)
