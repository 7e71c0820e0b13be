"""OCR with the Tesseract command-line program, one page at a time.

The CLI (not a Python binding) keeps Tesseract in a child process: a crash or a runaway page
kills only that child, a timeout bounds every page, and a cancelled job stops between polls.
Each page yields its text and a one-page searchable PDF; the pages are merged into one
searchable PDF, the job's artifact, which keeps the scan's own encoding (`_pages`): a
JPEG's bytes embedded unchanged, a PDF page kept under Tesseract's text-only layer. So the
artifact is the scan plus a few kB of invisible text, not the scan re-embedded as pixels.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

from app.core.config import Settings
from app.documents import pdfium
from app.documents.sniff import JPEG, PDF, frames
from app.jobs.errors import PermanentJobError

RENDER_DPI = 300
"""Tesseract is trained on ~300 dpi text; lower loses small print, higher only costs time."""

PAGE_TIMEOUT_SECONDS = 300.0
"""A page that takes longer is pathological (noise, a huge poster); fail it with a message."""

_POLL_SECONDS = 0.5
_LANGUAGES = re.compile(r"^[A-Za-z_]+(\+[A-Za-z_]+)*$")

WaitFn = Callable[[], None]
PageFn = Callable[[int, int], None]


@dataclass
class PageText:
    page: int
    text: str


@dataclass
class OcrResult:
    engine: str
    languages: str
    pages: list[PageText] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(page.text for page in self.pages if page.text)


def missing_tesseract_message(settings: Settings) -> str:
    return (
        "Tesseract OCR is not installed: apt-get install tesseract-ocr, or set TESSERACT_CMD "
        f"(now {settings.TESSERACT_CMD!r}) to the tesseract program"
    )


def tesseract_path(settings: Settings) -> str:
    """The executable to run, or a PermanentJobError that says how to install it."""
    found = shutil.which(settings.TESSERACT_CMD)
    if found is None:
        raise PermanentJobError(missing_tesseract_message(settings))
    return found


def check_engine(settings: Settings, languages: str) -> str:
    """Fail fast, before rendering anything, when the engine or a language pack is missing.

    Returns the engine's version line, recorded in the job result.
    """
    if not _LANGUAGES.match(languages):
        raise PermanentJobError(
            f"invalid OCR language list {languages!r}: use Tesseract codes joined by '+', "
            "such as 'eng' or 'eng+fra'"
        )
    exe = tesseract_path(settings)
    version = _run_quick([exe, "--version"], settings).splitlines()
    listed = _run_quick([exe, "--list-langs"], settings).splitlines()[1:]
    installed = {line.strip() for line in listed if line.strip()}
    missing = [lang for lang in languages.split("+") if lang not in installed]
    if missing:
        packages = " ".join(f"tesseract-ocr-{lang.lower().replace('_', '-')}" for lang in missing)
        raise PermanentJobError(
            f"Tesseract language data missing for {', '.join(missing)}: apt-get install "
            f"{packages}, or change OCR_LANGUAGES (installed: {', '.join(sorted(installed))})"
        )
    return version[0].strip() if version else "tesseract"


def _run_quick(cmd: list[str], settings: Settings) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    except FileNotFoundError:
        raise PermanentJobError(missing_tesseract_message(settings)) from None
    except subprocess.TimeoutExpired:
        raise PermanentJobError(f"{cmd[0]} did not answer {cmd[1]} within 30 s") from None
    # Tesseract 4 prints --version on stderr, 5 on stdout.
    return proc.stdout or proc.stderr


def ocr_document(
    path: Path,
    mime_type: str,
    *,
    settings: Settings,
    languages: str,
    work_dir: Path,
    searchable_pdf: Path,
    on_page: PageFn,
    on_wait: WaitFn,
) -> OcrResult:
    """OCR every page of the document at `path` and write the merged searchable PDF.

    `on_page(done, total)` is called after each page and `on_wait()` while Tesseract runs;
    either may raise (cancellation) and the child process is killed.
    """
    engine = check_engine(settings, languages)
    exe = tesseract_path(settings)
    result = OcrResult(engine=engine, languages=languages)
    parts: list[pdfium.OcrPart] = []
    total = _page_count(path, mime_type)
    for number, page in enumerate(_pages(path, mime_type, work_dir), start=1):
        base = work_dir / f"page-{number:05d}"
        _tesseract(
            exe,
            page.input,
            base,
            languages=languages,
            dpi=page.dpi,
            page=number,
            text_only=page.underlay is not None,
            settings=settings,
            on_wait=on_wait,
        )
        if page.input.parent == work_dir:
            page.input.unlink(missing_ok=True)
        text = base.with_suffix(".txt").read_text(encoding="utf-8", errors="replace")
        result.pages.append(PageText(page=number, text=text.replace("\f", "").strip()))
        parts.append(pdfium.OcrPart(base.with_suffix(".pdf"), page.underlay))
        on_page(number, total)
    pdfium.merge_ocr_pages(parts, dest=searchable_pdf, source=path if mime_type == PDF else None)
    return result


def _page_count(path: Path, mime_type: str) -> int:
    if mime_type == PDF:
        with pdfium.open_pdf(path) as pdf:
            return pdfium.page_count(pdf)
    with Image.open(path) as image:
        return sum(1 for _ in frames(image, mime_type))


@dataclass
class _Page:
    """What Tesseract reads for one page: `input` (a file), at `dpi`. With `underlay` (the
    source PDF's page index) Tesseract writes only the invisible text, laid over that page."""

    input: Path
    dpi: int
    underlay: int | None = None


def _pages(path: Path, mime_type: str, work_dir: Path) -> Iterator[_Page]:
    """Each page as a file Tesseract reads well, and how its searchable page is made.

    The searchable PDF keeps the scan's own encoding: a JPEG is handed to Tesseract as is
    (its PDF embeds the JPEG bytes, DCT, unchanged), and a PDF page is kept as it is, with
    Tesseract's text-only layer over it. Only the rest (PNG, TIFF frames, a rotated or
    CMYK JPEG, a rotated PDF page) is decoded and written for Tesseract, which then
    compresses the pixels itself (Flate), about as PNG does.
    """
    if mime_type == PDF:
        with pdfium.open_pdf(path) as pdf:
            for index in range(pdfium.page_count(pdf)):
                width_pt, _ = pdfium.page_size(pdf, index)
                image = pdfium.render_page(pdf, index, scale=RENDER_DPI / 72)
                # The render may have been scaled down (huge page): derive the real dpi.
                dpi = max(round(image.width * 72 / width_pt), 1) if width_pt else RENDER_DPI
                underlay = index if pdfium.can_underlay(pdf, index) else None
                yield _Page(_save_png(image, work_dir, index, dpi), dpi, underlay)
        return
    with Image.open(path) as source:
        if mime_type == JPEG and _keeps_as_is(source):
            yield _Page(path, _image_dpi(source))
            return
        for index, frame in enumerate(frames(source, mime_type)):
            dpi = _image_dpi(frame)
            # exif_transpose returns a new image, so the next TIFF seek cannot change it.
            image = _flatten(ImageOps.exif_transpose(frame))
            if mime_type == JPEG and image.mode in ("L", "RGB"):
                # Turned upright: still a JPEG (high quality), never pixels in Flate.
                target = work_dir / f"input-{index:05d}.jpg"
                image.save(target, format="JPEG", quality=92, dpi=(dpi, dpi))
                image.close()
                yield _Page(target, dpi)
            else:
                yield _Page(_save_png(image, work_dir, index, dpi), dpi)


def _keeps_as_is(image: Image.Image) -> bool:
    """A JPEG that Tesseract and every PDF viewer show upright and in the right colours."""
    orientation = image.getexif().get(0x0112, 1)
    return image.mode in ("L", "RGB") and orientation in (0, 1)


def _save_png(image: Image.Image, work_dir: Path, index: int, dpi: int) -> Path:
    target = work_dir / f"input-{index:05d}.png"
    # Fast compression: the file lives for one Tesseract run, and level 6 is ~4x slower.
    image.save(target, format="PNG", dpi=(dpi, dpi), compress_level=1)
    image.close()
    return target


def _image_dpi(image: Image.Image) -> int:
    """The scan's own resolution when it is plausible, else 300 (phone photos say 72)."""
    dpi = image.info.get("dpi")
    try:
        value = round(float(dpi[0])) if dpi else 0
    except (TypeError, ValueError, IndexError):
        value = 0
    return value if 150 <= value <= 1200 else RENDER_DPI


def _flatten(image: Image.Image) -> Image.Image:
    """Drop alpha onto white and reduce exotic modes (CMYK, 16-bit) to ones Tesseract reads."""
    if image.mode in ("1", "L", "RGB"):
        return image
    if image.mode in ("RGBA", "LA", "P", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode.startswith("I;16"):
        # 16-bit greyscale scans: keep the top 8 bits instead of clipping at 255.
        return image.point(lambda value: value / 256).convert("L")
    return image.convert("RGB")


def _tesseract(
    exe: str,
    image: Path,
    base: Path,
    *,
    languages: str,
    dpi: int,
    page: int,
    text_only: bool,
    settings: Settings,
    on_wait: WaitFn,
) -> None:
    """Run Tesseract on one page image, writing `base`.txt and `base`.pdf (the image with
    its invisible text, or with `text_only` the invisible text alone)."""
    cmd = [exe, str(image), str(base), "-l", languages, "--dpi", str(dpi)]
    cmd += ["-c", "textonly_pdf=1"] if text_only else []
    cmd += ["txt", "pdf"]
    # One thread per Tesseract: workers already run one job per core, and OpenMP
    # oversubscription makes Tesseract several times slower, not faster.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
        )
    except FileNotFoundError:
        raise PermanentJobError(missing_tesseract_message(settings)) from None
    deadline = time.monotonic() + PAGE_TIMEOUT_SECONDS
    try:
        while True:
            try:
                _, stderr = proc.communicate(timeout=_POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > deadline:
                    raise PermanentJobError(
                        f"OCR of page {page} took longer than {PAGE_TIMEOUT_SECONDS:.0f} s; "
                        "the scan may be mostly noise or far too large"
                    ) from None
                on_wait()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    if proc.returncode != 0:
        detail = " ".join((stderr or "").split())[-500:]
        if "Failed loading language" in detail or "Error opening data file" in detail:
            raise PermanentJobError(
                f"Tesseract cannot load language data for {languages!r}: install the matching "
                f"tesseract-ocr-<lang> package or change OCR_LANGUAGES ({detail})"
            )
        raise PermanentJobError(
            f"Tesseract failed on page {page} (exit status {proc.returncode}): {detail}"
        )
