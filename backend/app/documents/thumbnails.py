"""Thumbnails in several sizes, aspect ratio kept, as one ZIP.

Each size is a bounding box: the longest side of the thumbnail equals the size. Images are
never enlarged (a 100 px icon stays 100 px: upscaling adds bytes, not detail); PDF pages are
vector, so they are rendered at exactly the largest size and reduced from there. Photos
(JPEG sources) become JPEG thumbnails, because a photo as PNG is several times larger; all
else becomes PNG, which keeps text sharp and transparency intact.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from app.documents import pdfium
from app.documents.sniff import JPEG, PDF, ImageTooLarge, check_frame, frames

MAX_THUMBNAIL_SIZE = 4096
MAX_THUMBNAIL_PAGES = 10


@dataclass(frozen=True)
class Thumbnail:
    name: str
    page: int
    size: int
    width: int
    height: int
    bytes: int
    mime_type: str


def normalise_sizes(sizes: list[int]) -> list[int]:
    """Sorted, de-duplicated sizes, largest first; a bad setting fails loudly."""
    clean = sorted({int(size) for size in sizes}, reverse=True)
    if not clean or clean[-1] < 1 or clean[0] > MAX_THUMBNAIL_SIZE:
        raise ValueError(
            f"THUMBNAIL_SIZES must list sizes between 1 and {MAX_THUMBNAIL_SIZE} px, got {sizes}"
        )
    return clean


def write_thumbnails_zip(
    path: Path,
    mime_type: str,
    *,
    sizes: list[int],
    pages: int,
    dest: Path,
    max_pixels: int | None = None,
) -> list[Thumbnail]:
    """Write the thumbnails of the first `pages` pages into the ZIP file `dest`.

    Entries are named `p{page}-{size}.{png|jpg}`; the returned list describes each one so
    a client knows what the ZIP holds without downloading it. Every image page is checked
    against `max_pixels` (DOCUMENT_MAX_PIXELS; by default Pillow's MAX_IMAGE_PIXELS) before
    it is decoded.
    """
    sizes = normalise_sizes(sizes)
    as_jpeg = mime_type == JPEG
    ext, fmt, mime = ("jpg", "JPEG", JPEG) if as_jpeg else ("png", "PNG", "image/png")
    options: dict[str, Any] = {"optimize": True, **({"quality": 85} if as_jpeg else {})}
    thumbs: list[Thumbnail] = []
    # Stored, not deflated: PNG and JPEG are already compressed.
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED) as archive:
        limit = max_pixels or Image.MAX_IMAGE_PIXELS or 2**62
        pages_iter = _first_pages(path, mime_type, sizes[0], pages, limit)
        for number, (page, true_size, vector) in enumerate(pages_iter, start=1):
            page = _display_mode(page, as_jpeg)
            for size in sizes:
                target = fit(true_size, size, upscale=vector)
                thumb = (
                    page
                    if target == page.size
                    else page.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
                )
                name = f"p{number}-{size}.{ext}"
                with archive.open(name, "w") as entry:
                    thumb.save(entry, format=fmt, **options)
                thumbs.append(
                    Thumbnail(
                        name=name,
                        page=number,
                        size=size,
                        width=thumb.width,
                        height=thumb.height,
                        bytes=archive.getinfo(name).file_size,
                        mime_type=mime,
                    )
                )
            page.close()
    return thumbs


def fit(size: tuple[float, float], box: int, *, upscale: bool) -> tuple[int, int]:
    """Pixel size of `size` scaled so its longest side is `box`, aspect ratio kept.

    Computed from the true size (PDF points, or the image's pixels) rather than from an
    intermediate render, so rounding happens once and the aspect ratio is exact.
    """
    width, height = size
    scale = box / max(width, height, 1e-9)
    if not upscale:
        scale = min(scale, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _first_pages(
    path: Path, mime_type: str, largest: int, pages: int, max_pixels: int
) -> Iterator[tuple[Image.Image, tuple[float, float], bool]]:
    """(upright image, true size, is vector) for each of the first `pages` pages.

    PDF pages are rendered a little above the largest size, so every thumbnail is a
    reduction; images come at their own resolution (JPEGs decoded at a reduced scale).
    """
    if mime_type == PDF:
        with pdfium.open_pdf(path) as pdf:
            for index in range(min(pages, pdfium.page_count(pdf))):
                width, height = pdfium.page_size(pdf, index)
                scale = (largest + 2) / max(width, height, 1.0)
                yield pdfium.render_page(pdf, index, scale=scale), (width, height), True
        return
    with Image.open(path) as source:
        for index, frame in enumerate(frames(source, mime_type)):
            if index >= pages:
                break
            _check_frame_size(frame.size, index + 1, max_pixels)
            if mime_type == JPEG:
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale: a 24 MP photo loads in a blink.
                frame.draft("RGB", (largest, largest))
            # Honour EXIF orientation: a portrait phone photo must not come out sideways.
            # exif_transpose returns a new image, so the next TIFF seek cannot change it.
            upright = ImageOps.exif_transpose(frame)
            yield upright, upright.size, False


def _check_frame_size(size: tuple[int, int], page: int, max_pixels: int) -> None:
    """Pillow checks only a file's first frame: every page is checked before it decodes (a
    file stored before the limits, or a limit lowered since). The job maps the error to a
    permanent failure."""
    try:
        check_frame(size, page, max_pixels)
    except ImageTooLarge as exc:
        raise Image.DecompressionBombError(exc.message) from None


def _display_mode(image: Image.Image, as_jpeg: bool) -> Image.Image:
    """A mode the output format can store: RGB for JPEG, RGB(A) or L(A) for PNG."""
    if image.mode.startswith("I;16"):
        image = image.point(lambda value: value / 256).convert("L")
    elif image.mode == "1":
        # Pillow resizes bilevel images with nearest-neighbour; greyscale scales smoothly.
        image = image.convert("L")
    if as_jpeg:
        return image if image.mode in ("L", "RGB") else image.convert("RGB")
    if image.mode in ("1", "L", "LA", "RGB", "RGBA"):
        return image
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")
