"""`/docs` (Swagger UI) and `/redoc` (ReDoc) from the assets shipped in `app/static/`: no CDN,
so the pages work on a network without one. The files are package data (`pyproject.toml`)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC_DIR = Path(__file__).resolve().parents[2] / "static"
STATIC_URL = "/static"
TITLE = "Report job service"

router = APIRouter(include_in_schema=False)


def static_files() -> StaticFiles:
    """What `main.py` mounts at `STATIC_URL`."""
    return StaticFiles(directory=STATIC_DIR)


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{TITLE} - Swagger UI",
        swagger_js_url=f"{STATIC_URL}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{STATIC_URL}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{STATIC_URL}/swagger-ui/favicon-32x32.png",
        # No badge fetched from validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get("/redoc", response_class=HTMLResponse)
def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title=f"{TITLE} - ReDoc",
        redoc_js_url=f"{STATIC_URL}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{STATIC_URL}/swagger-ui/favicon-32x32.png",
        with_google_fonts=False,
    )
