"""Which Tesseract languages this host has, for the checks at submit.

`tesseract --list-langs` takes ~50 ms, so its answer is kept for `TTL_SECONDS` (a language
pack installed meanwhile is seen within a minute). Callers run in the thread pool (sync
routes), never on the event loop. Where the API host has no Tesseract at all (the workers
run elsewhere) there is nothing to check against: the job's own check (`ocr.check_engine`)
still fails it with what to install, and /health/ready shows OCR off on this host.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

from app.core.config import Settings
from app.core.errors import InvalidInputError

TTL_SECONDS = 60.0
_TIMEOUT_SECONDS = 10.0

_lock = threading.Lock()
_cache: dict[str, tuple[float, frozenset[str] | None]] = {}


class UnknownOcrLanguage(InvalidInputError):
    """An OCR language this host's Tesseract has no data for."""


def installed_languages(settings: Settings) -> frozenset[str] | None:
    """The languages of TESSERACT_CMD, or None when it is not found or does not answer."""
    command = settings.TESSERACT_CMD
    now = time.monotonic()
    with _lock:
        hit = _cache.get(command)
        if hit is not None and now - hit[0] < TTL_SECONDS:
            return hit[1]
    found = _list(command)
    with _lock:
        _cache[command] = (now, found)
    return found


def _list(command: str) -> frozenset[str] | None:
    exe = shutil.which(command)
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "--list-langs"],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    # Tesseract 4 lists on stderr, 5 on stdout; the first line is a header.
    lines = (proc.stdout or proc.stderr).splitlines()[1:]
    return frozenset(line.strip() for line in lines if line.strip())


def package_of(language: str) -> str:
    """The Debian/Ubuntu package with a language's data (`chi_sim` -> tesseract-ocr-chi-sim)."""
    return f"tesseract-ocr-{language.lower().replace('_', '-')}"


def check_languages(settings: Settings, languages: str | None) -> None:
    """Refuse (422) a language list with one this host's Tesseract lacks, listing what it
    has; `None` checks the default, OCR_LANGUAGES."""
    wanted = languages or settings.OCR_LANGUAGES
    installed = installed_languages(settings)
    if installed is None:
        return
    missing = [lang for lang in wanted.split("+") if lang not in installed]
    if not missing:
        return
    source = "" if languages else " (OCR_LANGUAGES, the default)"
    raise UnknownOcrLanguage(
        f"OCR language {'+'.join(missing)!r}{source} is not installed. Installed: "
        f"{', '.join(sorted(installed))}. Pick one of those, or have the operator install "
        f"{' '.join(package_of(lang) for lang in missing)} (Debian/Ubuntu)."
    )
