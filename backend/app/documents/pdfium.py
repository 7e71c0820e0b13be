"""pypdfium2 behind one process-wide lock.

PDFium is not thread-safe, and the API sniffs uploads in FastAPI's thread pool while a worker
may render pages, so every PDFium call in this package goes through `PDFIUM_LOCK`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image

PDFIUM_LOCK = threading.RLock()

# A poster-sized page at 300 dpi would need gigabytes; above this many pixels the render
# scale is lowered so one page never takes more than ~120 MB as 8-bit RGB.
MAX_RENDER_PIXELS = 40_000_000

PdfiumError = pdfium.PdfiumError


@contextmanager
def open_pdf(path: Path) -> Iterator[pdfium.PdfDocument]:
    """Open a PDF for reading; closed under the lock so no finalizer races another thread."""
    with PDFIUM_LOCK:
        pdf = pdfium.PdfDocument(str(path))
    try:
        yield pdf
    finally:
        with PDFIUM_LOCK:
            pdf.close()


def page_count(pdf: pdfium.PdfDocument) -> int:
    with PDFIUM_LOCK:
        return len(pdf)


def render_page(
    pdf: pdfium.PdfDocument, index: int, *, scale: float, grayscale: bool = False
) -> Image.Image:
    """Render page `index` (0-based) at `scale` (1.0 = 72 dpi), capped at MAX_RENDER_PIXELS."""
    with PDFIUM_LOCK:
        page = pdf[index]
        try:
            width, height = page.get_size()
            pixels = max(width * scale, 1.0) * max(height * scale, 1.0)
            if pixels > MAX_RENDER_PIXELS:
                scale *= (MAX_RENDER_PIXELS / pixels) ** 0.5
            bitmap = page.render(scale=scale, grayscale=grayscale, may_draw_forms=True)
            try:
                image: Image.Image = bitmap.to_pil()
                # to_pil() may share memory with the bitmap: copy before the bitmap is freed.
                image = image.copy()
            finally:
                bitmap.close()
        finally:
            page.close()
    return image


def page_size(pdf: pdfium.PdfDocument, index: int) -> tuple[float, float]:
    """Width and height of page `index` in points (1/72 inch)."""
    with PDFIUM_LOCK:
        page = pdf[index]
        try:
            width, height = page.get_size()
        finally:
            page.close()
    return float(width), float(height)


def merge_pdfs(parts: list[Path], dest: Path) -> None:
    """Concatenate single-page PDFs (Tesseract's per-page output) into one file."""
    with PDFIUM_LOCK:
        out = pdfium.PdfDocument.new()
        try:
            for part in parts:
                src = pdfium.PdfDocument(str(part))
                try:
                    out.import_pages(src)
                finally:
                    src.close()
            out.save(str(dest))
        finally:
            out.close()


@dataclass(frozen=True)
class OcrPart:
    """One page of Tesseract's output; with `underlay`, a text-only page to lay over that
    page (0-based) of the source PDF."""

    pdf: Path
    underlay: int | None = None


def can_underlay(pdf: pdfium.PdfDocument, index: int) -> bool:
    """Whether page `index` can be kept as it is under a text layer computed on its render:
    upright, and its visible box the whole page from the origin (the render's frame)."""
    with PDFIUM_LOCK:
        page = pdf[index]
        try:
            media = tuple(round(v, 2) for v in page.get_mediabox())
            crop = tuple(round(v, 2) for v in page.get_cropbox())
            return page.get_rotation() == 0 and media == crop and media[:2] == (0, 0)
        finally:
            page.close()


def merge_ocr_pages(parts: list[OcrPart], *, dest: Path, source: Path | None) -> None:
    """Tesseract's pages in one PDF; a text-only page gets the `source` page it was read
    from drawn beneath its text (as a form XObject: the original content, unre-encoded)."""
    with PDFIUM_LOCK:
        out = pdfium.PdfDocument.new()
        original = pdfium.PdfDocument(str(source)) if source is not None else None
        try:
            for part in parts:
                src = pdfium.PdfDocument(str(part.pdf))
                try:
                    out.import_pages(src)
                finally:
                    src.close()
                if part.underlay is not None and original is not None:
                    _underlay(out, len(out) - 1, original, part.underlay)
            out.save(str(dest))
        finally:
            if original is not None:
                original.close()
            out.close()


def _underlay(out: pdfium.PdfDocument, at: int, original: pdfium.PdfDocument, index: int) -> None:
    page = out[at]
    try:
        width, height = page.get_size()
        src_width, src_height = original.get_page_size(index)
        xobject = original.page_as_xobject(index, out)
        form = xobject.as_pageobject()
        form.set_matrix(pdfium.PdfMatrix().scale(width / src_width, height / src_height))
        # Index 0: drawn first, beneath the invisible text (which a viewer selects).
        if not pdfium_c.FPDFPage_InsertObjectAtIndex(page, form, 0):
            raise pdfium.PdfiumError("cannot lay the original page under the OCR text")
        form._detach_finalizer()
        form.page, form.pdf = page, out
        page.gen_content()
        xobject.close()
    finally:
        page.close()
