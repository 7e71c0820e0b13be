"""The optional features and whether this host has them, for /health/ready.

Informative only: a feature that is off never makes the service unready (the core job
service runs without any of them). Each entry says why it is on or off and, when off, what
to install or set (the README's "Optional features" table has the Debian/Ubuntu packages).
Nothing here opens a connection: whether a configured broker answers is the readiness
check's job, and an SMTP server is probed only by a mail job.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from app.core.config import Settings
from app.documents.languages import installed_languages, package_of


@dataclass(frozen=True)
class Feature:
    on: bool
    why: str


def optional_features(settings: Settings) -> dict[str, Feature]:
    """OCR, e-mail, Celery and RQ: on or off on this host, and why."""
    return {
        "ocr": _ocr(settings),
        "email": _email(settings),
        "celery": _broker(settings.CELERY_BROKER_URL, "CELERY_BROKER_URL", "Celery"),
        "rq": _broker(settings.RQ_REDIS_URL, "RQ_REDIS_URL", "RQ"),
    }


def _ocr(settings: Settings) -> Feature:
    installed = installed_languages(settings)
    if installed is None:
        return Feature(
            on=False,
            why=f"tesseract not found (TESSERACT_CMD={settings.TESSERACT_CMD}); "
            "apt install tesseract-ocr, plus tesseract-ocr-<lang> per language",
        )
    missing = [lang for lang in settings.OCR_LANGUAGES.split("+") if lang not in installed]
    if missing:
        packages = " ".join(package_of(lang) for lang in missing)
        return Feature(
            on=False,
            why=f"OCR_LANGUAGES={settings.OCR_LANGUAGES} but {'+'.join(missing)} is not "
            f"installed (installed: {', '.join(sorted(installed))}); apt install {packages}",
        )
    return Feature(on=True, why=f"tesseract languages: {', '.join(sorted(installed))}")


def _email(settings: Settings) -> Feature:
    if not settings.SMTP_HOST.strip():
        return Feature(
            on=False,
            why="SMTP_HOST is empty: set SMTP_HOST, SMTP_PORT and MAIL_FROM "
            "(mail requests are refused with 422 until then)",
        )
    return Feature(
        on=True,
        why=f"SMTP server {settings.SMTP_HOST}:{settings.SMTP_PORT}, from {settings.MAIL_FROM}",
    )


def _broker(url: str, setting: str, name: str) -> Feature:
    if not url.strip():
        return Feature(
            on=False,
            why=f"{setting} is empty: {name} needs a Redis server "
            "(apt install redis-server) and its URL in " + setting,
        )
    return Feature(on=True, why=f"{name} broker {_without_credentials(url)}")


def _without_credentials(url: str) -> str:
    """`redis://:secret@host:6379/0` shown as `redis://host:6379/0`."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(an unreadable URL)"
    return f"{parts.scheme}://{host}{port}{parts.path}"
