"""Decide what an uploaded file really is, from its bytes, never from its name.

A renamed executable (`invoice.pdf` that starts with `MZ`) must be rejected before any job
touches it, and a file that claims to be a PDF must actually open in PDFium: the magic bytes
choose the type, then the real decoder confirms it and counts pages.

Sizes are checked before any work: every frame's header (a TIFF's pages are read one IFD at a
time, no pixels) against a per-frame and a total pixel budget, then the pixels are decoded to
catch corrupt files, at most `decode_concurrency` images at a time in this process (JPEGs at
1/8 scale), so a small file that claims huge pages is refused without allocating them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageSequence, UnidentifiedImageError

from app.core.config import Settings
from app.core.errors import DomainError, InvalidInputError, UnsupportedMediaError
from app.documents import pdfium

PDF = "application/pdf"
PNG = "image/png"
JPEG = "image/jpeg"
TIFF = "image/tiff"

EXTENSIONS: dict[str, str] = {PDF: ".pdf", PNG: ".png", JPEG: ".jpg", TIFF: ".tiff"}
ACCEPTED_DESCRIPTION = "PDF, PNG, JPEG or TIFF"

# Pillow format names expected for each image type (phones write JPEGs as MPO).
_PIL_FORMATS: dict[str, tuple[str, ...]] = {PNG: ("PNG",), JPEG: ("JPEG", "MPO"), TIFF: ("TIFF",)}

# Signatures of common files people upload by mistake, only to name them in the error.
_KNOWN_OTHERS: tuple[tuple[bytes, str], ...] = (
    (b"MZ", "a Windows executable"),
    (b"\x7fELF", "a Linux executable"),
    (b"\xcf\xfa\xed\xfe", "a macOS executable"),
    (b"\xca\xfe\xba\xbe", "a macOS executable or Java class"),
    (b"#!", "a script"),
    (b"PK\x03\x04", "a ZIP archive (or a DOCX/XLSX file)"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF file (WebP, WAV or AVI)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office document"),
)

PDF_HEADER_WINDOW = 1024
"""PDF readers accept `%PDF-` anywhere in the first 1 KiB (some scanners prepend junk)."""


class DocumentRejected(DomainError):
    """An upload that cannot become a document; each subclass is also the kind of mistake
    (`app.core.errors`) that decides how the API answers."""


class UnsupportedDocumentType(DocumentRejected, UnsupportedMediaError):
    """The content is of a type we do not handle (whatever the file is called)."""


class CorruptDocument(DocumentRejected, InvalidInputError):
    """The type is one we handle, but the decoder cannot read the file."""


class TooManyPages(DocumentRejected, InvalidInputError):
    """More pages than DOCUMENT_MAX_PAGES."""


class ImageTooLarge(DocumentRejected, InvalidInputError):
    """A frame over DOCUMENT_MAX_PIXELS, or all frames over DOCUMENT_MAX_TOTAL_PIXELS."""


@dataclass(frozen=True)
class PixelLimits:
    """What an image upload may hold; the defaults are the settings' defaults."""

    per_frame: int = 64_000_000
    """DOCUMENT_MAX_PIXELS (also Pillow's MAX_IMAGE_PIXELS)."""
    total: int = 256_000_000
    """DOCUMENT_MAX_TOTAL_PIXELS, over all frames of one file."""
    decode_concurrency: int = 2
    """DOCUMENT_DECODE_CONCURRENCY: images this process decodes at once."""


def pixel_limits(settings: Settings) -> PixelLimits:
    return PixelLimits(
        per_frame=settings.DOCUMENT_MAX_PIXELS,
        total=settings.DOCUMENT_MAX_TOTAL_PIXELS,
        decode_concurrency=settings.DOCUMENT_DECODE_CONCURRENCY,
    )


DEFAULT_LIMITS = PixelLimits()
# Pillow checks the first frame of every file it opens against this (workers included).
Image.MAX_IMAGE_PIXELS = DEFAULT_LIMITS.per_frame

_decode_slots: dict[int, threading.BoundedSemaphore] = {}
_decode_slots_lock = threading.Lock()


def _decode_slot(concurrency: int) -> threading.BoundedSemaphore:
    with _decode_slots_lock:
        n = max(1, concurrency)
        return _decode_slots.setdefault(n, threading.BoundedSemaphore(n))


def check_frame(size: tuple[int, int], page: int, max_pixels: int) -> int:
    """The pixels of page `page` (1-based) of `size`, or `ImageTooLarge` over `max_pixels`."""
    width, height = size
    pixels = width * height
    if pixels > max_pixels:
        raise ImageTooLarge(
            f"page {page} is {width}x{height} pixels ({pixels:,}); the limit is "
            f"{max_pixels:,} pixels per page (DOCUMENT_MAX_PIXELS)"
        )
    return pixels


@dataclass(frozen=True)
class DocumentInfo:
    """What the bytes turned out to be."""

    mime_type: str
    pages: int
    width: int | None = None
    height: int | None = None

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.mime_type]


def sniff_mime(head: bytes) -> str | None:
    """The MIME type named by the leading bytes, or None when it is not one we accept."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return TIFF
    if b"%PDF-" in head[:PDF_HEADER_WINDOW]:
        return PDF
    return None


def describe_unknown(head: bytes) -> str:
    for magic, what in _KNOWN_OTHERS:
        if head.startswith(magic):
            return what
    if not head:
        return "an empty file"
    return "an unrecognised format"


def frames(image: Image.Image, mime_type: str) -> Iterator[Image.Image]:
    """The pages of an image file: every frame of a TIFF, only the first of anything else.

    An MPO's second frame is a depth map and an APNG's frames are animation, not pages.
    """
    if mime_type == TIFF:
        yield from ImageSequence.Iterator(image)
    else:
        image.seek(0)
        yield image


def inspect_document(
    path: Path, *, max_pages: int, limits: PixelLimits = DEFAULT_LIMITS
) -> DocumentInfo:
    """Identify and validate the file at `path`, or raise `DocumentRejected`.

    Every frame's size is checked from its header first; then decoding is real (Pillow loads
    the pixels, PDFium opens the document), so a truncated or corrupt file is refused at
    upload time instead of failing later in a job.
    """
    with path.open("rb") as fh:
        head = fh.read(PDF_HEADER_WINDOW)
    mime = sniff_mime(head)
    if mime is None:
        raise UnsupportedDocumentType(
            f"unsupported file type: the content is {describe_unknown(head)}; "
            f"accepted types are {ACCEPTED_DESCRIPTION} (detected from the content, "
            "not from the file name)"
        )
    info = _inspect_pdf(path) if mime == PDF else _inspect_image(path, mime, max_pages, limits)
    if info.pages > max_pages:
        raise TooManyPages(_too_many_pages(str(info.pages), max_pages))
    return info


def _too_many_pages(count: str, max_pages: int) -> str:
    return (
        f"the document has {count} pages; the limit is {max_pages} "
        "(DOCUMENT_MAX_PAGES): split it and upload the parts"
    )


def _inspect_pdf(path: Path) -> DocumentInfo:
    width = height = 0.0
    try:
        with pdfium.open_pdf(path) as pdf:
            pages = pdfium.page_count(pdf)
            if pages:
                width, height = pdfium.page_size(pdf, 0)
    except pdfium.PdfiumError as exc:
        reason = str(exc)
        if "password" in reason.lower():
            raise CorruptDocument(
                "the PDF is password-protected: remove the password and upload it again"
            ) from None
        raise CorruptDocument(
            f"the PDF is corrupt or truncated and cannot be read ({reason})"
        ) from None
    if pages == 0:
        raise CorruptDocument("the PDF has no pages")
    return DocumentInfo(mime_type=PDF, pages=pages, width=round(width), height=round(height))


def _inspect_image(path: Path, mime: str, max_pages: int, limits: PixelLimits) -> DocumentInfo:
    label = _PIL_FORMATS[mime][0]
    Image.MAX_IMAGE_PIXELS = limits.per_frame
    try:
        with Image.open(path) as image:
            if image.format not in _PIL_FORMATS[mime]:
                raise CorruptDocument(
                    f"the file starts like a {label} image but decodes as {image.format}"
                )
            width, height = image.size
            pages = _check_frames(image, mime, max_pages, limits)
            with _decode_slot(limits.decode_concurrency):
                for frame in frames(image, mime):
                    if mime == JPEG:
                        frame.draft(None, (1, 1))  # libjpeg decodes it all at 1/8 scale
                    frame.load()
    except Image.DecompressionBombError:
        raise ImageTooLarge(
            f"the image is too large to process (more than {limits.per_frame:,} pixels per "
            "page, DOCUMENT_MAX_PIXELS)"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptDocument(
            f"the {label} image is corrupt or truncated and cannot be decoded ({exc})"
        ) from None
    return DocumentInfo(mime_type=mime, pages=max(pages, 1), width=width, height=height)


def _check_frames(image: Image.Image, mime: str, max_pages: int, limits: PixelLimits) -> int:
    """The page count, from every frame's header (no pixels decoded), within the limits."""
    pages = total = 0
    for frame in frames(image, mime):
        pages += 1
        if pages > max_pages:
            raise TooManyPages(_too_many_pages(f"more than {max_pages}", max_pages))
        total += check_frame(frame.size, pages, limits.per_frame)
        if total > limits.total:
            raise ImageTooLarge(
                f"the pages add up to more than {limits.total:,} pixels (at page {pages}); "
                "the limit is DOCUMENT_MAX_TOTAL_PIXELS: split the file or scan at a lower "
                "resolution"
            )
    return pages
