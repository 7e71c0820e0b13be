"""The console's pages: Jinja templates (autoescaped), its filters, and the headers every page
carries.

The Content-Security-Policy allows only the service's own origin: no inline script, no
CDN, nothing fetched from elsewhere, so a page works offline and an injected `<script>`
would not run. Pages are never cached: they show a user's jobs.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from app.api.console.auth import CSRF_FIELD, Visitor

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
ASSETS = "/static/console"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
FINAL = ("completed", "failed", "cancelled")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def _size(value: int | None) -> str:
    if value is None:
        return ""
    size = float(value)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


templates = Jinja2Templates(directory=TEMPLATES_DIR)
templates.env.filters["when"] = _when
templates.env.filters["size"] = _size
templates.env.globals.update(ASSETS=ASSETS, CSRF_FIELD=CSRF_FIELD, FINAL=FINAL)


def page(
    request: Request,
    template: str,
    visitor: Visitor | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """A console page with its security headers; `visitor` gives the menu and CSRF token."""
    response = templates.TemplateResponse(
        request,
        template,
        {"visitor": visitor, "user": visitor.user if visitor else None, **context},
        status_code=status_code,
        headers=HEADERS,
    )
    return response


def message_of(exc: ValueError) -> str:
    """A refused form's message: pydantic's errors as `field: why`, one after another."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()
        )
    return str(exc)
