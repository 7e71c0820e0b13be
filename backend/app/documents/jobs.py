"""Job handlers for the documents queue: OCR and thumbnails of an uploaded document.

`ctx.params` (set by the documents route): `document_id`, `document_key` (its storage key),
`mime_type`, optional `filename`, and `languages` (OCR) or `pages` (thumbnails). The worker
stages the document into its own scratch directory for the attempt (in place for `file://`).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from PIL import Image

from app.documents import ocr, pdfium, thumbnail_store, thumbnails
from app.documents.sniff import PDF, sniff_mime
from app.jobs.context import ArtifactFile, JobContext, JobOutput
from app.jobs.errors import PermanentJobError
from app.storage import ObjectMissing, StorageError, StorageUnavailable, get_store, staged


def run_ocr(ctx: JobContext) -> JobOutput:
    """Text of every page (in the result) and a searchable PDF (the artifact)."""
    with _document(ctx) as (path, mime):
        return _ocr(ctx, path, mime)


def _ocr(ctx: JobContext, path: Path, mime: str) -> JobOutput:
    languages = str(ctx.params.get("languages") or ctx.settings.OCR_LANGUAGES)
    ctx.progress(1, "checking the OCR engine")
    out_pdf = ctx.temp_path(".pdf")

    def on_page(done: int, total: int) -> None:
        ctx.progress(5 + 90 * done / max(total, 1), f"OCR page {done} of {total}")

    work_dir = _work_dir(ctx)
    try:
        with _decode_errors():
            result = ocr.ocr_document(
                path,
                mime,
                settings=ctx.settings,
                languages=languages,
                work_dir=work_dir,
                searchable_pdf=out_pdf,
                on_page=on_page,
                on_wait=ctx.check_cancelled,
            )
    except BaseException:
        out_pdf.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    ctx.progress(98, "searchable PDF written")
    return JobOutput(
        result={
            "document_id": ctx.params.get("document_id"),
            "engine": result.engine,
            "languages": result.languages,
            "page_count": len(result.pages),
            "pages": [asdict(page) for page in result.pages],
            "text": result.text,
            "searchable_pdf": True,
        },
        artifact=ArtifactFile(out_pdf, PDF, f"{_stem(ctx)}-ocr.pdf"),
    )


def run_thumbnails(ctx: JobContext) -> JobOutput:
    """All configured sizes in one ZIP (the artifact), listed in the result; each image is
    also stored on its own (`thumbnail_store`), for `GET /documents/{id}/thumbnails/{size}`.

    A ZIP, not the largest PNG: the point of several sizes is having all of them, and one
    artifact keeps the download atomic and checksummed.
    """
    with _document(ctx) as (path, mime):
        return _thumbnails(ctx, path, mime)


def _thumbnails(ctx: JobContext, path: Path, mime: str) -> JobOutput:
    pages = _int_param(ctx.params, "pages", default=1, low=1, high=thumbnails.MAX_THUMBNAIL_PAGES)
    try:
        sizes = thumbnails.normalise_sizes(list(ctx.settings.THUMBNAIL_SIZES))
    except ValueError as exc:
        raise PermanentJobError(str(exc)) from None
    ctx.progress(5, "rendering thumbnails")
    out_zip = ctx.temp_path(".zip")
    try:
        with _decode_errors():
            thumbs = thumbnails.write_thumbnails_zip(
                path,
                mime,
                sizes=sizes,
                pages=pages,
                dest=out_zip,
                max_pixels=ctx.settings.DOCUMENT_MAX_PIXELS,
            )
    except BaseException:
        out_zip.unlink(missing_ok=True)
        raise
    document_id = ctx.params.get("document_id")
    if document_id:
        try:
            thumbnail_store.put_singles(
                get_store(ctx.settings),
                document_id=str(document_id),
                zip_path=out_zip,
                scratch_dir=ctx.scratch_dir,
                prefix=ctx.scratch_prefix,
            )
        except BaseException:
            out_zip.unlink(missing_ok=True)
            raise
    ctx.progress(95, f"{len(thumbs)} thumbnails written")
    return JobOutput(
        result={
            "document_id": ctx.params.get("document_id"),
            "sizes": sorted({thumb.size for thumb in thumbs}),
            "pages": len({thumb.page for thumb in thumbs}),
            "thumbnails": [_described(thumb, document_id) for thumb in thumbs],
        },
        artifact=ArtifactFile(out_zip, "application/zip", f"{_stem(ctx)}-thumbnails.zip"),
    )


def _described(thumb: thumbnails.Thumbnail, document_id: Any) -> dict[str, Any]:
    """A ZIP entry, and where it downloads on its own."""
    entry = asdict(thumb)
    if document_id:
        entry["url"] = f"/documents/{document_id}/thumbnails/{thumb.size}?page={thumb.page}"
    return entry


@contextmanager
def _decode_errors() -> Iterator[None]:
    """A document that fails to decode is a permanent failure, not a worker crash.

    Pillow reports bad data as a bare OSError (no errno); an OSError with an errno (disk
    full, I/O error) is left alone so the runner can treat it as the system fault it is.
    """
    try:
        yield
    except pdfium.PdfiumError as exc:
        raise PermanentJobError(f"the PDF cannot be rendered: {exc}") from None
    except Image.DecompressionBombError as exc:
        raise PermanentJobError(f"the image is too large to process: {exc}") from None
    except (OSError, SyntaxError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        raise PermanentJobError(f"the image cannot be decoded: {exc}") from None


@contextmanager
def _document(ctx: JobContext) -> Iterator[tuple[Path, str]]:
    """The document as a local file, and its type sniffed again: the file is the truth, not
    the row. A staged copy is removed when the block ends."""
    key = ctx.params.get("document_key")
    # `document_path` (a host path) is what jobs queued before the object store carry: still
    # read, so they survive the upgrade.
    legacy = ctx.params.get("document_path")
    if not key and not legacy:
        raise PermanentJobError("the job has no document_key parameter")
    name = Path(str(key or legacy)).name
    gone = f"the document file is gone ({name}); it may have been deleted: upload it again"
    with ExitStack() as stack:
        try:
            if key:
                store = get_store(ctx.settings)
                path = stack.enter_context(
                    staged(store, str(key), ctx.scratch_dir, prefix=ctx.scratch_prefix)
                )
            else:
                path = Path(str(legacy))
            with path.open("rb") as fh:
                head = fh.read(4096)
        except (ObjectMissing, FileNotFoundError):
            raise PermanentJobError(gone) from None
        except StorageUnavailable:
            raise  # a ConnectionError: the runner retries the attempt
        except StorageError as exc:
            raise PermanentJobError(f"the stored document cannot be read: {exc}") from exc
        mime = sniff_mime(head)
        if mime is None:
            raise PermanentJobError("the stored document is not a PDF, PNG, JPEG or TIFF file")
        yield path, mime


def _stem(ctx: JobContext) -> str:
    fallback = f"document-{ctx.params.get('document_id') or ctx.job_id}"
    name = str(ctx.params.get("filename") or fallback)
    stem = Path(name).stem or "document"
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:100]


def _work_dir(ctx: JobContext) -> Path:
    """A private directory for page images, on the scratch volume.

    Named `ocr-<job>-…`, not `<job>-…`: the runner unlinks `<job>-*` files after a failed
    attempt and a directory there would trip it. A directory left by a killed attempt is
    removed here, when the job is retried.
    """
    ctx.scratch_dir.mkdir(parents=True, exist_ok=True)
    for stale in ctx.scratch_dir.glob(f"ocr-{ctx.job_id}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"ocr-{ctx.job_id}-", dir=ctx.scratch_dir))


def _int_param(params: dict[str, Any], name: str, *, default: int, low: int, high: int) -> int:
    try:
        value = int(params.get(name, default))
    except (TypeError, ValueError):
        raise PermanentJobError(f"{name} must be an integer") from None
    if not low <= value <= high:
        raise PermanentJobError(f"{name} must be between {low} and {high}")
    return value
