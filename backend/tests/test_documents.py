"""Documents: type sniffing, OCR with the real Tesseract, thumbnails opened and measured.

Test files are generated here: words drawn with Pillow's built-in FreeType font (no font
package needed), a "scanned" PDF made of page images only, a JPEG with EXIF orientation.
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFont
from sqlalchemy.orm import Session

from app.api.errors import status_of
from app.core.config import Settings, set_settings
from app.db.session import session_scope
from app.documents.jobs import run_ocr, run_thumbnails
from app.documents.models import Document
from app.documents.sniff import (
    CorruptDocument,
    TooManyPages,
    UnsupportedDocumentType,
    inspect_document,
    sniff_mime,
)
from app.documents.store import absolute_path, save_upload
from app.jobs.context import JobContext
from app.jobs.errors import JobCancelled, PermanentJobError
from app.uploads.store import UploadTooLarge
from app.users.models import User
from tests.conftest import DATABASES, Service, running_service

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def need_tesseract() -> None:
    """OCR tests skip on a machine without Tesseract, but CI must have it."""
    if shutil.which("tesseract") is None:
        reason = "Tesseract is not installed (apt-get install tesseract-ocr)"
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


# --------------------------------------------------------------------------- generated files
def page_with_words(lines: list[str], size: tuple[int, int] = (2480, 3508)) -> Image.Image:
    """An A4 page at 300 dpi with big black words, like a clean scan."""
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=90)
    for number, line in enumerate(lines):
        draw.text((200, 300 + number * 180), line, font=font, fill="black")
    return image


def scanned_pdf(path: Path, pages: list[list[str]]) -> Path:
    """An image-only PDF, as a scanner makes: no text layer at all."""
    images = [page_with_words(lines) for lines in pages]
    images[0].save(path, format="PDF", save_all=True, append_images=images[1:], resolution=300)
    return path


def vector_pdf(path: Path, pages: int = 1, size: tuple[float, float] = (595, 842)) -> Path:
    pdf = pdfium.PdfDocument.new()
    for _ in range(pages):
        pdf.new_page(*size)
    pdf.save(str(path))
    pdf.close()
    return path


def settings_for(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(ENVIRONMENT="test", VAR_DIR=tmp_path, **overrides)


def make_ctx(settings: Settings, job_type: str, path: Path, mime: str, **params: Any) -> JobContext:
    return JobContext(
        job_id="doc-job",
        job_type=job_type,
        params={
            "document_path": str(path),
            "mime_type": mime,
            "document_id": "d1",
            "filename": path.name,
            **params,
        },
        owner_id=1,
        attempt=1,
        settings=settings,
        report_progress=lambda p, m: None,
        check_cancelled=lambda: None,
        scratch_dir=settings.VAR_DIR / "scratch",
    )


# --------------------------------------------------------------------------- sniffing
def test_types_come_from_content_not_name(tmp_path: Path) -> None:
    png = tmp_path / "photo.pdf"  # misleading name, real PNG
    Image.new("RGB", (40, 20), "red").save(png, format="PNG")
    jpeg = tmp_path / "a.bin"
    Image.new("RGB", (40, 20), "red").save(jpeg, format="JPEG")
    tiff = tmp_path / "a.tif"
    frames = [Image.new("L", (30, 30), shade) for shade in (0, 128, 255)]
    frames[0].save(tiff, format="TIFF", save_all=True, append_images=frames[1:])
    pdf = vector_pdf(tmp_path / "a.pdf", pages=2)

    assert inspect_document(png, max_pages=10).mime_type == "image/png"
    assert inspect_document(jpeg, max_pages=10).mime_type == "image/jpeg"
    info = inspect_document(tiff, max_pages=10)
    assert (info.mime_type, info.pages) == ("image/tiff", 3)
    info = inspect_document(pdf, max_pages=10)
    assert (info.mime_type, info.pages, info.width, info.height) == ("application/pdf", 2, 595, 842)
    assert sniff_mime(b"junk\n%PDF-1.7\n") == "application/pdf"  # scanner preamble


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (b"MZ\x90\x00\x03" + b"\x00" * 200, "a Windows executable"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 200, "a Linux executable"),
        (b"#!/bin/sh\nrm -rf /\n", "a script"),
        (b"PK\x03\x04" + b"\x00" * 100, "a ZIP archive"),
        (b"GIF89a" + b"\x00" * 100, "a GIF image"),
        (b"", "an empty file"),
        (b"hello, plain text", "an unrecognised format"),
    ],
)
def test_other_types_are_refused_with_415(tmp_path: Path, content: bytes, what: str) -> None:
    path = tmp_path / "invoice.pdf"
    path.write_bytes(content)
    with pytest.raises(UnsupportedDocumentType) as excinfo:
        inspect_document(path, max_pages=10)
    assert status_of(excinfo.value) == 415
    assert what in excinfo.value.message and "PDF, PNG, JPEG or TIFF" in excinfo.value.message


def test_corrupt_files_are_refused_with_422(tmp_path: Path) -> None:
    bad_pdf = tmp_path / "bad.pdf"
    bad_pdf.write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage without xref\n")
    buffer = io.BytesIO()
    Image.new("RGB", (400, 400), "blue").save(buffer, format="PNG")
    truncated_png = tmp_path / "cut.png"
    truncated_png.write_bytes(buffer.getvalue()[:200])
    jpeg_header_only = tmp_path / "head.jpg"
    jpeg_header_only.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)
    for path in (bad_pdf, truncated_png, jpeg_header_only):
        with pytest.raises(CorruptDocument) as excinfo:
            inspect_document(path, max_pages=10)
        assert status_of(excinfo.value) == 422
        assert "corrupt" in excinfo.value.message or "decodes as" in excinfo.value.message


def test_page_limit(tmp_path: Path) -> None:
    pdf = vector_pdf(tmp_path / "long.pdf", pages=3)
    with pytest.raises(TooManyPages, match="has 3 pages; the limit is 2"):
        inspect_document(pdf, max_pages=2)
    tiff = tmp_path / "long.tiff"
    frames = [Image.new("L", (10, 10)) for _ in range(4)]
    frames[0].save(tiff, format="TIFF", save_all=True, append_images=frames[1:])
    with pytest.raises(TooManyPages, match="more than 2 pages"):
        inspect_document(tiff, max_pages=2)


# --------------------------------------------------------------------------- OCR
def test_ocr_of_a_generated_image_finds_the_words(tmp_path: Path) -> None:
    need_tesseract()
    png = tmp_path / "note.png"
    page_with_words(["LIGHTHOUSE harmonica", "Quarterly invoice 2024"], (1800, 700)).save(
        png, dpi=(300, 300)
    )
    output = run_ocr(make_ctx(settings_for(tmp_path), "ocr", png, "image/png"))
    assert output.result is not None
    text = output.result["text"].lower()
    for word in ("lighthouse", "harmonica", "quarterly", "invoice", "2024"):
        assert word in text
    assert output.result["page_count"] == 1 and output.result["engine"].startswith("tesseract")
    assert output.artifact is not None and output.artifact.filename == "note-ocr.pdf"


def test_ocr_of_a_scanned_pdf_gives_text_per_page_and_a_searchable_pdf(tmp_path: Path) -> None:
    need_tesseract()
    scan = scanned_pdf(tmp_path / "scan.pdf", [["Quarterly REPORT"], ["Zebra crossing"]])
    with pdfium.PdfDocument(str(scan)) as source:  # really image-only: no text to extract
        assert source[0].get_textpage().get_text_range().strip() == ""
    progress: list[float] = []
    ctx = make_ctx(settings_for(tmp_path), "ocr", scan, "application/pdf")
    ctx.report_progress = lambda percent, message: progress.append(percent)
    output = run_ocr(ctx)
    assert output.result is not None
    pages = output.result["pages"]
    assert [page["page"] for page in pages] == [1, 2]
    assert "quarterly" in pages[0]["text"].lower() and "report" in pages[0]["text"].lower()
    assert "zebra" in pages[1]["text"].lower() and "zebra" not in pages[0]["text"].lower()
    assert progress == sorted(progress) and len(progress) >= 3

    assert output.artifact is not None and output.artifact.mime_type == "application/pdf"
    with pdfium.PdfDocument(str(output.artifact.path)) as searchable:
        assert len(searchable) == 2
        width, height = searchable[0].get_size()
        assert (round(width), round(height)) == (595, 842)  # A4 kept
        found = searchable[1].get_textpage().get_text_range().lower()
    assert "crossing" in found
    assert not list((tmp_path / "scratch").glob("ocr-*"))  # page images cleaned up


def test_ocr_handles_exif_rotated_photo(tmp_path: Path) -> None:
    need_tesseract()
    upright = page_with_words(["SIDEWAYS text"], (1400, 500))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a phone sensor stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    path = tmp_path / "phone.jpg"
    stored.save(path, format="JPEG", exif=exif, quality=95)
    output = run_ocr(make_ctx(settings_for(tmp_path), "ocr", path, "image/jpeg"))
    assert output.result is not None and "sideways" in output.result["text"].lower()


def test_missing_tesseract_fails_with_how_to_fix(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, TESSERACT_CMD="/nonexistent/tesseract")
    png = tmp_path / "a.png"
    Image.new("L", (50, 50), 255).save(png)
    with pytest.raises(PermanentJobError) as excinfo:
        run_ocr(make_ctx(settings, "ocr", png, "image/png"))
    assert str(excinfo.value).startswith(
        "Tesseract OCR is not installed: apt-get install tesseract-ocr, or set TESSERACT_CMD"
    )
    assert not list((tmp_path / "scratch").glob("*.pdf"))  # no orphan artifact


def test_missing_language_pack_names_the_package(tmp_path: Path) -> None:
    need_tesseract()
    png = tmp_path / "a.png"
    Image.new("L", (50, 50), 255).save(png)
    ctx = make_ctx(settings_for(tmp_path, OCR_LANGUAGES="eng+xyz"), "ocr", png, "image/png")
    with pytest.raises(PermanentJobError, match="apt-get install tesseract-ocr-xyz"):
        run_ocr(ctx)
    ctx = make_ctx(settings_for(tmp_path), "ocr", png, "image/png", languages="eng;rm -rf")
    with pytest.raises(PermanentJobError, match="invalid OCR language list"):
        run_ocr(ctx)


def test_ocr_can_be_cancelled_between_pages(tmp_path: Path) -> None:
    need_tesseract()
    scan = scanned_pdf(tmp_path / "scan.pdf", [["one"], ["two"], ["three"]])
    ctx = make_ctx(settings_for(tmp_path), "ocr", scan, "application/pdf")

    def cancel_after_first_page(percent: float, message: str) -> None:
        if message.startswith("OCR page 1"):
            raise JobCancelled("cancelled")

    ctx.report_progress = cancel_after_first_page
    with pytest.raises(JobCancelled):
        run_ocr(ctx)
    assert not list((tmp_path / "scratch").iterdir())  # partial output removed


# --------------------------------------------------------------------------- thumbnails
def open_zip(path: Path) -> dict[str, Image.Image]:
    with zipfile.ZipFile(path) as archive:
        return {name: Image.open(io.BytesIO(archive.read(name))) for name in archive.namelist()}


def test_thumbnails_of_an_image_keep_aspect_and_never_upscale(tmp_path: Path) -> None:
    png = tmp_path / "wide.png"
    Image.new("RGBA", (1200, 600), (255, 0, 0, 128)).save(png)
    settings = settings_for(tmp_path, THUMBNAIL_SIZES=[128, 256, 512, 2048])
    output = run_thumbnails(make_ctx(settings, "thumbnails", png, "image/png"))
    assert output.artifact is not None and output.artifact.mime_type == "application/zip"
    images = open_zip(output.artifact.path)
    sizes = {name: image.size for name, image in images.items()}
    assert sizes == {
        "p1-2048.png": (1200, 600),
        "p1-512.png": (512, 256),
        "p1-256.png": (256, 128),
        "p1-128.png": (128, 64),
    }
    assert images["p1-128.png"].mode == "RGBA"  # transparency kept
    assert output.result is not None
    listed = {item["name"]: (item["width"], item["height"]) for item in output.result["thumbnails"]}
    assert listed == sizes and output.result["sizes"] == [128, 256, 512, 2048]


def test_thumbnails_of_a_pdf_render_the_first_page(tmp_path: Path) -> None:
    pdf = scanned_pdf(tmp_path / "doc.pdf", [["first"], ["second"]])
    output = run_thumbnails(make_ctx(settings_for(tmp_path), "thumbnails", pdf, "application/pdf"))
    assert output.artifact is not None
    images = open_zip(output.artifact.path)
    assert sorted(images) == ["p1-128.png", "p1-256.png", "p1-512.png"]
    for size in (128, 256, 512):
        width, height = images[f"p1-{size}.png"].size
        assert (width, height) == (round(size * 2480 / 3508), size)  # A4 aspect kept
    # White page, black words: a real render, not a blank one.
    darkest, lightest = cast(tuple[int, int], images["p1-512.png"].convert("L").getextrema())
    assert darkest < 100 and lightest == 255

    two = run_thumbnails(
        make_ctx(settings_for(tmp_path), "thumbnails", pdf, "application/pdf", pages=2)
    )
    assert two.artifact is not None and "p2-512.png" in open_zip(two.artifact.path)


def test_thumbnails_honour_exif_orientation(tmp_path: Path) -> None:
    stored = Image.new("RGB", (400, 200), "white")  # landscape as stored by the sensor
    stored.paste((255, 0, 0), (0, 0, 100, 200))  # red band on the stored left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise: the left edge becomes the top
    path = tmp_path / "photo.jpg"
    stored.save(path, format="JPEG", exif=exif, quality=95)
    output = run_thumbnails(make_ctx(settings_for(tmp_path), "thumbnails", path, "image/jpeg"))
    assert output.artifact is not None
    images = open_zip(output.artifact.path)
    assert sorted(images) == ["p1-128.jpg", "p1-256.jpg", "p1-512.jpg"]
    assert images["p1-512.jpg"].size == (200, 400)  # portrait, and not upscaled
    assert images["p1-256.jpg"].format == "JPEG" and images["p1-256.jpg"].size == (128, 256)
    thumb = images["p1-128.jpg"].convert("RGB")
    assert thumb.size == (64, 128)
    red, green, _ = cast(tuple[int, int, int], thumb.getpixel((32, 5)))
    assert red > 200 and green < 60  # the band is on top
    red, green, _ = cast(tuple[int, int, int], thumb.getpixel((32, 120)))
    assert red > 200 and green > 200  # white at the bottom


def test_thumbnails_of_a_multipage_tiff(tmp_path: Path) -> None:
    path = tmp_path / "fax.tiff"
    frames = [Image.new("1", (1728, 2200), 1), Image.new("1", (1728, 1100), 0)]
    frames[0].save(
        path, format="TIFF", save_all=True, append_images=frames[1:], compression="group4"
    )
    output = run_thumbnails(
        make_ctx(settings_for(tmp_path), "thumbnails", path, "image/tiff", pages=5)
    )
    assert output.artifact is not None
    images = open_zip(output.artifact.path)
    assert images["p1-256.png"].size == (201, 256)
    assert images["p2-256.png"].size == (256, 163)


def test_a_bad_file_at_job_time_is_a_clean_permanent_failure(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    missing = make_ctx(settings, "thumbnails", tmp_path / "gone.png", "image/png")
    with pytest.raises(PermanentJobError, match="document file is gone"):
        run_thumbnails(missing)
    buffer = io.BytesIO()
    Image.new("RGB", (300, 300), "blue").save(buffer, format="PNG")
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(buffer.getvalue()[:150])  # damaged after the upload was checked
    with pytest.raises(PermanentJobError, match="cannot be decoded"):
        run_thumbnails(make_ctx(settings, "thumbnails", damaged, "image/png"))
    renamed = tmp_path / "tool.png"
    renamed.write_bytes(b"MZ" + b"\x00" * 100)
    with pytest.raises(PermanentJobError, match="not a PDF, PNG, JPEG or TIFF"):
        run_thumbnails(make_ctx(settings, "thumbnails", renamed, "image/png"))
    bad_sizes = settings_for(tmp_path, THUMBNAIL_SIZES=[0, 128])
    png = tmp_path / "ok.png"
    Image.new("RGB", (10, 10)).save(png)
    with pytest.raises(PermanentJobError, match="THUMBNAIL_SIZES"):
        run_thumbnails(make_ctx(bad_sizes, "thumbnails", png, "image/png"))
    assert not list((tmp_path / "scratch").glob("*.zip"))


# --------------------------------------------------------------------------- HTTP API
API_UPLOAD_LIMIT = 3 * 1024 * 1024
API_MAX_PAGES = 3


@pytest.fixture(scope="module", params=DATABASES)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    var_dir = tmp_path_factory.mktemp(f"docs-{request.param}")
    with running_service(
        request.param, var_dir, MAX_UPLOAD_BYTES=API_UPLOAD_LIMIT, DOCUMENT_MAX_PAGES=API_MAX_PAGES
    ) as svc:
        yield svc


def png_bytes(lines: list[str], size: tuple[int, int] = (1800, 600)) -> bytes:
    buffer = io.BytesIO()
    page_with_words(lines, size).save(buffer, format="PNG", dpi=(300, 300))
    return buffer.getvalue()


def upload(
    service: Service,
    auth: dict[str, str],
    name: str,
    content: bytes,
    content_type: str = "application/octet-stream",
    **form: str,
) -> Any:
    return service.client.post(
        "/documents", headers=auth, data=form, files={"file": (name, content, content_type)}
    )


def test_upload_with_both_jobs_then_read_results(
    service: Service, auth: dict[str, str], other_auth: dict[str, str]
) -> None:
    need_tesseract()
    content = png_bytes(["Harbour LIGHTHOUSE", "invoice 4711"])
    response = upload(
        service, auth, "scan.png", content, "image/png", ocr="true", thumbnails="true"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    document = body["document"]
    assert document["mime_type"] == "image/png" and document["pages"] == 1
    assert document["size_bytes"] == len(content) and document["filename"] == "scan.png"
    assert response.headers["location"] == f"/documents/{document['document_id']}"
    assert set(body["jobs"]) == {"ocr", "thumbnails"}
    assert {job["queue"] for job in body["jobs"].values()} == {"documents"}

    ocr_job = service.wait(body["jobs"]["ocr"]["job_id"], auth)
    assert ocr_job["status"] == "completed", ocr_job
    assert "lighthouse" in ocr_job["result"]["text"].lower()
    assert "4711" in ocr_job["result"]["pages"][0]["text"]
    pdf = service.client.get(ocr_job["download_url"], headers=auth)
    assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")

    thumbs_job = service.wait(body["jobs"]["thumbnails"]["job_id"], auth)
    assert thumbs_job["status"] == "completed", thumbs_job
    archive = service.client.get(thumbs_job["download_url"], headers=auth)
    assert archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zipped:
        sizes = {name: Image.open(io.BytesIO(zipped.read(name))).size for name in zipped.namelist()}
    assert sizes == {"p1-512.png": (512, 171), "p1-256.png": (256, 85), "p1-128.png": (128, 43)}

    # Owner only: another token sees nothing, and cannot start jobs on it.
    url = f"/documents/{document['document_id']}"
    assert service.client.get(url, headers=auth).json()["sha256"] == document["sha256"]
    assert service.client.get(url, headers=other_auth).status_code == 404
    assert service.client.post(f"{url}/ocr", headers=other_auth).status_code == 404
    listed = service.client.get("/documents", headers=auth).json()
    assert document["document_id"] in [item["document_id"] for item in listed["items"]]
    others = service.client.get("/documents", headers=other_auth).json()
    assert others["total"] == 0


def test_jobs_started_on_an_existing_pdf(service: Service, auth: dict[str, str]) -> None:
    buffer = io.BytesIO()
    page_with_words(["one"], (620, 877)).save(buffer, format="PDF", resolution=75)
    response = upload(service, auth, "letter.pdf", buffer.getvalue())
    assert response.status_code == 201, response.text
    document_id = response.json()["document"]["document_id"]
    assert response.json()["jobs"] == {}

    accepted = service.client.post(
        f"/documents/{document_id}/thumbnails", headers=auth, json={"pages": 1}
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status_url"] == f"/reports/jobs/{accepted.json()['job_id']}"
    job = service.wait(accepted.json()["job_id"], auth)
    assert job["status"] == "completed", job
    assert [t["height"] for t in job["result"]["thumbnails"]] == [512, 256, 128]

    by_query = service.client.post(
        "/documents?thumbnails=true", headers=auth, files={"file": ("again.pdf", buffer.getvalue())}
    )
    assert by_query.status_code == 201 and list(by_query.json()["jobs"]) == ["thumbnails"]
    assert service.wait(by_query.json()["jobs"]["thumbnails"]["job_id"], auth)["status"] == (
        "completed"
    )

    bad = service.client.post(
        f"/documents/{document_id}/ocr", headers=auth, json={"languages": "eng; rm -rf /"}
    )
    assert bad.status_code == 422
    assert service.client.post("/documents/no-such-id/ocr", headers=auth).status_code == 404


def test_unknown_ocr_language_is_refused_at_submit_listing_the_installed_ones(
    service: Service, auth: dict[str, str]
) -> None:
    need_tesseract()
    response = upload(service, auth, "a.png", png_bytes(["word"], (400, 200)))
    document_id = response.json()["document"]["document_id"]
    refused = service.client.post(
        f"/documents/{document_id}/ocr", headers=auth, json={"languages": "eng+xyz"}
    )
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert "'xyz'" in detail and "Installed: " in detail and "eng" in detail
    assert "tesseract-ocr-xyz" in detail


def jpeg_scan(lines: list[str]) -> bytes:
    """A grey, slightly noisy page as a phone or a cheap scanner saves it (JPEG q=50)."""
    page = Image.eval(page_with_words(lines, (1700, 2200)).convert("L"), lambda v: v * 0.92)
    page = ImageChops.add(page, Image.effect_noise(page.size, 6), 1, -128)
    buffer = io.BytesIO()
    page.save(buffer, format="JPEG", quality=50, dpi=(300, 300))
    return buffer.getvalue()


def test_ocr_pdf_of_a_jpeg_keeps_the_jpeg_and_has_extractable_text(
    service: Service, auth: dict[str, str]
) -> None:
    need_tesseract()
    from pypdf import PdfReader

    scan = jpeg_scan(["Harbour LIGHTHOUSE", "invoice 4711"])
    response = upload(service, auth, "scan.jpg", scan, "image/jpeg", ocr="true")
    assert response.status_code == 201, response.text
    job = service.wait(response.json()["jobs"]["ocr"]["job_id"], auth)
    assert job["status"] == "completed", job
    pdf = service.client.get(job["download_url"], headers=auth)
    assert pdf.status_code == 200
    # The scan's own bytes plus a text layer: before, the page was re-embedded as Flate
    # pixels (about 12 times the JPEG).
    assert len(pdf.content) <= len(scan) * 1.1, (len(pdf.content), len(scan))
    assert scan[2:-2] in pdf.content  # the JPEG itself, byte for byte
    text = PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text().lower()
    assert "lighthouse" in text and "4711" in text


def test_single_thumbnails_by_size(
    service: Service, auth: dict[str, str], other_auth: dict[str, str]
) -> None:
    response = upload(service, auth, "wide.png", png_bytes(["thumb"]), "image/png")
    document_id = response.json()["document"]["document_id"]
    url = f"/documents/{document_id}/thumbnails"
    before = service.client.get(f"{url}/256", headers=auth)
    assert before.status_code == 404 and "POST /documents/" in before.json()["detail"]
    accepted = service.client.post(url, headers=auth, json={"pages": 1})
    job = service.wait(accepted.json()["job_id"], auth)
    assert job["status"] == "completed", job
    assert job["result"]["thumbnails"][0]["url"] == f"{url}/512?page=1"
    for size, expected in ((512, (512, 171)), (256, (256, 85)), (128, (128, 43))):
        single = service.client.get(f"{url}/{size}", headers=auth)
        assert single.status_code == 200, single.text
        assert single.headers["content-type"] == "image/png"
        image = Image.open(io.BytesIO(single.content))
        assert image.format == "PNG" and image.size == expected
    unknown = service.client.get(f"{url}/300", headers=auth)
    assert unknown.status_code == 404 and "128, 256, 512" in unknown.json()["detail"]
    assert service.client.get(f"{url}/256?page=2", headers=auth).status_code == 404
    assert service.client.get(f"{url}/256", headers=other_auth).status_code == 404
    assert service.client.delete(f"/documents/{document_id}", headers=auth).status_code == 204
    assert service.client.get(f"{url}/256", headers=auth).status_code == 404


def test_health_ready_lists_the_optional_features_that_are_off(service: Service) -> None:
    missing = service.settings.model_copy(update={"TESSERACT_CMD": "/nonexistent/tesseract"})
    set_settings(missing)
    try:
        response = service.client.get("/health/ready")
    finally:
        set_settings(service.settings)
    assert response.status_code == 200, response.text  # informative: still ready
    features = response.json()["features"]
    assert set(features) == {"ocr", "email", "celery", "rq"}
    assert features["ocr"]["on"] is False
    assert "TESSERACT_CMD=/nonexistent/tesseract" in features["ocr"]["why"]
    assert "apt install tesseract-ocr" in features["ocr"]["why"]
    assert features["email"]["on"] is False and "SMTP_HOST" in features["email"]["why"]
    assert not features["celery"]["on"] and "redis-server" in features["celery"]["why"]
    if shutil.which("tesseract"):
        again = service.client.get("/health/ready").json()["features"]["ocr"]
        assert again["on"] is True and "eng" in again["why"]


@pytest.mark.parametrize(
    ("name", "content", "code", "message"),
    [
        ("report.pdf", b"MZ\x90\x00" + b"\x00" * 4000, 415, "Windows executable"),
        ("setup.png", b"\x7fELF\x02\x01\x01" + b"\x00" * 4000, 415, "Linux executable"),
        ("notes.pdf", b"%PDF-1.7\nthis is not really a pdf\n%%EOF\n", 422, "corrupt"),
        ("cut.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 20, 422, "corrupt"),
        ("empty.pdf", b"", 422, "empty"),
    ],
)
def test_bad_uploads_get_a_clear_4xx(
    service: Service, auth: dict[str, str], name: str, content: bytes, code: int, message: str
) -> None:
    response = upload(service, auth, name, content, "application/pdf")
    assert response.status_code == code, response.text
    assert message in response.json()["detail"]
    if code == 415:
        assert "PDF, PNG, JPEG or TIFF" in response.json()["detail"]


def test_upload_limits(service: Service, auth: dict[str, str]) -> None:
    too_big = upload(service, auth, "big.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * API_UPLOAD_LIMIT)
    assert too_big.status_code == 413
    assert "limit" in too_big.json()["detail"]

    pdf = pdfium.PdfDocument.new()
    for _ in range(API_MAX_PAGES + 1):
        pdf.new_page(200, 200)
    buffer = io.BytesIO()
    pdf.save(buffer)
    pdf.close()
    long = upload(service, auth, "long.pdf", buffer.getvalue())
    assert long.status_code == 422
    assert f"the limit is {API_MAX_PAGES}" in long.json()["detail"]

    assert service.client.post("/documents", headers=auth).status_code == 422  # no file
    assert service.client.post("/documents", files={"file": ("a", b"x")}).status_code == 401
    leftovers = list(service.settings.scratch_dir.glob("upload-*"))
    assert leftovers == []  # refused uploads leave nothing behind


def _stored(service: Service, auth: dict[str, str], name: str) -> tuple[str, Path]:
    """Upload a small PNG; its id and where the service stored it."""
    response = upload(service, auth, name, png_bytes([name], (300, 100)))
    document_id = response.json()["document"]["document_id"]
    with session_scope() as session:
        document = session.get(Document, document_id)
        assert document is not None
        return document_id, absolute_path(service.settings, document)


def test_file_damaged_after_upload_ends_in_a_clean_failed_job(
    service: Service, auth: dict[str, str]
) -> None:
    document_id, path = _stored(service, auth, "fine.png")
    path.write_bytes(path.read_bytes()[:120])
    accepted = service.client.post(f"/documents/{document_id}/thumbnails", headers=auth)
    job = service.wait(accepted.json()["job_id"], auth)
    assert job["status"] == "failed" and job["attempts"] == 1
    assert "cannot be decoded" in job["error"]


def test_delete_removes_the_row_and_the_file_for_its_owner_only(
    service: Service, auth: dict[str, str], other_auth: dict[str, str]
) -> None:
    document_id, path = _stored(service, auth, "gone.png")
    url = f"/documents/{document_id}"
    refused = service.client.delete(url, headers=other_auth)
    assert refused.status_code == 404 and path.is_file()  # not theirs: as if absent

    assert service.client.delete(url, headers=auth).status_code == 204
    assert not path.exists()
    assert service.client.get(url, headers=auth).status_code == 404
    assert service.client.delete(url, headers=auth).status_code == 404
    again = service.client.post(f"{url}/thumbnails", headers=auth)
    assert again.status_code == 404


def test_store_enforces_the_limit_while_streaming(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, MAX_UPLOAD_BYTES=1000)
    source = io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"0" * 5000)
    with pytest.raises(UploadTooLarge):  # refused before the session or owner are touched
        save_upload(
            settings=settings,
            session=cast(Session, None),
            owner=cast(User, None),
            source=source,
            filename="x.png",
        )
    assert not list(settings.scratch_dir.iterdir())
