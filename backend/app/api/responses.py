"""What a route may answer besides its success, declared once for the OpenAPI document.

Routers take `AUTHENTICATED` (or nothing, for open routes); a route adds what it can raise
with `errors(...)`: a kind of domain error, whose status comes from `STATUS_OF` (the one
map), or a status that the edge answers by itself (400 an unreadable body, 413 the body-size
middleware). Every error body is `ErrorBody`; a 422 is `ValidationErrorBody`, which replaces
FastAPI's default 422 schema (that is not what `errors.validation_error` sends).
"""

from __future__ import annotations

from typing import Any

from app.api.errors import ErrorBody, ValidationErrorBody, status_of
from app.core.errors import DomainError, TooManyRequestsError, UnavailableError

Responses = dict[int | str, dict[str, Any]]

DESCRIPTIONS: dict[int, str] = {
    400: "The body could not be read: not UTF-8 JSON, or a broken multipart form.",
    401: "No bearer token, or an unknown, revoked or expired one.",
    403: "A signed link that was altered or has expired.",
    404: "No such resource for this token (someone else's looks the same as a missing one).",
    409: "The resource is not in a state that allows this (a finished job, no file yet).",
    410: "It existed, but its file was removed (retention cleanup).",
    413: "The body is over this route's size limit; the message names the limit.",
    415: "The file's content (not its name) is of a type this route does not take.",
    422: "The request does not match the schema (`errors` says where), or its content "
    "cannot be used (an unknown column, a template that does not compile...).",
    429: "Over a quota (jobs, submissions per minute, stored bytes, recipients per day); "
    "`Retry-After` says when to try again, when it is known.",
    503: "The service is not configured to run this kind of job (the message names the "
    "setting), or cannot right now.",
}

_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "`Bearer` (RFC 6750).",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before trying again.",
            "required": False,
            "schema": {"type": "integer", "minimum": 1},
        }
    },
}


def errors(*causes: int | type[DomainError]) -> Responses:
    """The `responses` entries of these refusals, each with its body model and headers."""
    out: Responses = {}
    for cause in causes:
        status = cause if isinstance(cause, int) else status_of(cause)
        entry: dict[str, Any] = {
            "model": ValidationErrorBody if status == 422 else ErrorBody,
            "description": DESCRIPTIONS[status],
        }
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        out[status] = entry
    return out


AUTHENTICATED = errors(401, 422)
"""Every route behind a bearer token; each takes a path, query or body, so each may 422."""

OPTIONAL_BEARER: dict[str, Any] = {"security": [{}]}
"""`openapi_extra` of a route that also opens without a token (a signed download link):
FastAPI appends it to the route's `HTTPBearer` requirement, and `{}` means "or none"."""


def reads_body(*more: int | type[DomainError]) -> Responses:
    """A route that reads a JSON or multipart body, and what else it may refuse."""
    return errors(400, 413, *more)


def submits(*more: int | type[DomainError]) -> Responses:
    """A route that creates a job or stores a file: it reads a body, under quotas."""
    return reads_body(TooManyRequestsError, UnavailableError, *more)


def created(location: str) -> Responses:
    """A 201 with its `Location` header (the new resource's path)."""
    header = {"description": f"`{location}`", "required": True, "schema": {"type": "string"}}
    return {201: {"headers": {"Location": header}}}


NOT_EMPTY = {"minLength": 1}
"""`json_schema_extra` of an upload's file: an empty one is refused (422)."""

ARTIFACT_MEDIA_TYPES = (
    "application/json",  # the dummy report
    "application/pdf",  # PDF reports, searchable PDFs of OCR
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",  # Excel reports
    "text/html",  # analysis reports
    "application/zip",  # thumbnails
    "application/octet-stream",  # a file stored without a type
)
"""What a job's file may be (the handlers' `ArtifactFile.mime_type`)."""


def file_download() -> Responses:
    """A job's file: 200 whole, or 206 the part a `Range` header asks for (file:// storage
    only); Starlette answers a malformed or unsatisfiable range itself, in plain text."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    # JSON is JSON, not a string: the dummy report's body is checked as any JSON value.
    content = {
        media: {} if media == "application/json" else binary for media in ARTIFACT_MEDIA_TYPES
    }
    text = {"text/plain": {"schema": {"type": "string"}}}
    return {
        200: {"description": "The file, as an attachment.", "content": content},
        206: {"description": "The requested range of the file.", "content": content},
        400: {"description": "A malformed `Range` header.", "content": text},
        416: {"description": "A `Range` past the end of the file.", "content": text},
    }


def event_stream() -> Responses:
    """A Server-Sent Events stream (`app/api/routes/events.py`): `event:` is `status` or
    `progress`, `data:` the job JSON (`JobRead`), `id:` what `Last-Event-ID` resumes from."""
    return {200: {"description": "An event stream: `event: status|progress`, `id:`, `data:`."}}


def json_errors(*causes: int | type[DomainError]) -> Responses:
    """`errors(...)` for a route whose success is not JSON (an event stream): FastAPI would
    file a `model` under the route's own media type, but the refusals are JSON bodies."""
    out = errors(*causes)
    for entry in out.values():
        model = entry.pop("model")
        ref = {"$ref": f"#/components/schemas/{model.__name__}"}
        entry["content"] = {"application/json": {"schema": ref}}
    return out
