"""Error responses a person can act on: every 4xx says what was wrong and where."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import (
    ConflictError,
    DomainError,
    ForbiddenError,
    GoneError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    TooManyRequestsError,
    UnavailableError,
    UnsupportedMediaError,
)


class ErrorBody(BaseModel):
    """Every refusal's body (4xx, and the 401 of a missing token): one sentence for a person."""

    detail: str = Field(description="What was wrong and, where it can say, what to do.")


class FieldError(BaseModel):
    """One place where a request did not match the schema (pydantic's error, trimmed)."""

    loc: list[str | int] = Field(description="Where: ['body', 'filters', 0, 'op'], ...")
    msg: str
    type: str = Field(description="pydantic's error type: 'missing', 'extra_forbidden'...")


class ValidationErrorBody(ErrorBody):
    """The 422 body. `errors` lists each field that did not match the schema; a request that
    matched it but whose content cannot be used (an unknown column...) has none."""

    errors: list[FieldError] = Field(default_factory=list)


def _describe(error: dict[str, Any]) -> str:
    location = ".".join(str(part) for part in error.get("loc", ()) if part != "body") or "body"
    if error.get("type") == "json_invalid":
        return f"malformed JSON: {error.get('ctx', {}).get('error', 'cannot parse')}"
    if error.get("type") == "extra_forbidden":
        return f"{location}: unknown field"
    return f"{location}: {error.get('msg', 'invalid')}"


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    body = ValidationErrorBody(
        detail="; ".join(_describe(e) for e in exc.errors()),
        errors=[
            FieldError(loc=list(e.get("loc", ())), msg=str(e.get("msg")), type=str(e.get("type")))
            for e in exc.errors()
        ],
    )
    return JSONResponse(status_code=422, content=body.model_dump(mode="json"))


STATUS_OF: dict[type[DomainError], int] = {
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    GoneError: 410,
    PayloadTooLargeError: 413,
    UnsupportedMediaError: 415,
    InvalidInputError: 422,
    TooManyRequestsError: 429,
    UnavailableError: 503,
}
"""The one mapping from a kind of domain error to its HTTP status."""


def status_of(error: DomainError | type[DomainError]) -> int:
    """The status of an error, or of a kind of error (the OpenAPI document asks by kind)."""
    kind = error if isinstance(error, type) else type(error)
    for base in kind.__mro__:
        if base in STATUS_OF:
            return STATUS_OF[base]
    return 422


async def domain_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    headers = None
    if isinstance(exc, TooManyRequestsError) and exc.retry_after is not None:
        headers = {"Retry-After": str(max(int(exc.retry_after), 1))}
    body = ErrorBody(detail=exc.message)
    return JSONResponse(status_code=status_of(exc), content=body.model_dump(), headers=headers)


async def method_not_allowed(request: Request, exc: Exception) -> JSONResponse:
    """405 with every method of the path in `Allow`: Starlette names only those of the first
    route that matched the path, and /datasets is two routes (GET and POST)."""
    allowed: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            allowed.update(getattr(route, "methods", None) or ())
    body = ErrorBody(detail=f"Method {request.method} not allowed here.")
    return JSONResponse(
        status_code=405, content=body.model_dump(), headers={"Allow": ", ".join(sorted(allowed))}
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(DomainError, domain_error)
    app.add_exception_handler(405, method_not_allowed)


class BodySizeLimit:
    """Refuse bodies over their route's limit with 413 before reading them into memory.

    Every route gets `json_limit` (or its own in `json_limits_by_path`), whatever the body's
    Content-Type says; only a multipart body sent to one of `upload_routes` (method, path)
    gets `upload_limit` (the upload store enforces it again while streaming). A declared
    Content-Length over the limit is refused before any byte is read; a body without one is
    cut off as soon as it passes the limit.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        json_limit: int,
        upload_limit: int,
        upload_routes: Iterable[tuple[str, str]] = (),
        json_limits_by_path: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit
        self.upload_routes = frozenset((m.upper(), p.rstrip("/") or "/") for m, p in upload_routes)
        self.json_limits_by_path = json_limits_by_path or {}

    def limit_of(self, method: str, path: str, content_type: str) -> tuple[int, str]:
        """The byte limit of a request, and the setting that sets it."""
        route = (method.upper(), path.rstrip("/") or "/")
        if content_type.startswith("multipart/") and route in self.upload_routes:
            return self.upload_limit, "MAX_UPLOAD_BYTES"
        if path in self.json_limits_by_path:
            return self.json_limits_by_path[path], "the route's own limit"
        return self.json_limit, "MAX_JSON_BODY_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").decode("latin-1").strip().lower()
        limit, name = self.limit_of(scope.get("method", "GET"), scope.get("path", ""), content_type)
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit, name)
            return
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer 413 now; the app sees a disconnect and its own reply is dropped.
                    refused = True
                    await _too_large(send, limit, name)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)


async def _too_large(send: Send, limit: int, name: str) -> None:
    detail = f"Request body too large: the limit for this route is {limit} bytes ({name})."
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
