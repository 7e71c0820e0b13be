"""Reports in any script: the PDF embeds subset Unicode fonts and prints every string of the
data as written (Polish, Japanese, Russian, Arabic, Hebrew, Korean); download names keep the
title (RFC 6266 `filename*` with an ASCII `filename`).

The PDFs are built through the job handler from an uploaded CSV and opened with pypdf: its
fonts (embedded, subset, never Helvetica) and its text, compared with the strings put in
the data. The Arabic strings compare exactly too: the fonts' ToUnicode maps give the letters
behind each shaped form, and pypdf puts right-to-left runs back in reading order.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pypdf
import pytest
from fastapi.testclient import TestClient
from reportlab.graphics import renderPDF

from app.api.routes.reports import _send
from app.core.config import Settings
from app.core.downloads import ascii_fallback, content_disposition, download_name
from app.jobs.artifacts import Download
from app.jobs.context import JobContext
from app.reports import charts, heavy
from app.reports.datasets import sniff_file
from app.reports.demo_datasets import columns_of_demo
from app.reports.pdf_fonts import SANS, SANS_BOLD
from app.reports.schemas import HeavyReportRequest
from app.reports.validation import validate_request
from tests.conftest import Service

CITIES = ["Łódź", "東京", "Москва", "القاهرة", "תל אביב", "서울"]
# "فلافل" has a lam-alef, drawn as one ligature glyph; "مَرْحَبًا" has harakat (marks).
PRODUCTS = ["Kaffee", "緑茶", "Чай", "فلافل", "مَرْحَبًا"]
TITLE = "Umsatz nach Stadt \u2013 Zürich/Łódź"  # an en dash
NAME = "Umsatz nach Stadt \u2013 Zürich-Łódź.pdf"  # the slash cannot stay in a name
ASCII_NAME = "Umsatz nach Stadt - Zurich-Lodz.pdf"
SUBSET = re.compile(r"^/[A-Z]{6}\+")


def _ctx(tmp_path: Path, params: dict[str, Any]) -> JobContext:
    return JobContext(
        job_id="t",
        job_type="pdf",
        params=params,
        owner_id=1,
        attempt=1,
        settings=Settings(ENVIRONMENT="test", VAR_DIR=tmp_path),
        report_progress=lambda p, m: None,
        check_cancelled=lambda: None,
        scratch_dir=tmp_path / "scratch",
    )


def _build(tmp_path: Path, params: dict[str, Any]) -> Path:
    out = heavy.run(_ctx(tmp_path, params))
    assert out.artifact is not None and out.artifact.mime_type == "application/pdf"
    return Path(out.artifact.path)


@pytest.fixture(scope="module")
def unicode_pdf(tmp_path_factory: pytest.TempPathFactory) -> pypdf.PdfReader:
    """A report grouped by city and product over 120 rows holding the strings."""
    tmp_path = tmp_path_factory.mktemp("unicode-pdf")
    csv = tmp_path / "cities.csv"
    lines = ["day,city,product,amount"]
    for i in range(120):
        city, product = CITIES[i % len(CITIES)], PRODUCTS[i % len(PRODUCTS)]
        lines.append(f"2024-{1 + i % 12:02d}-{1 + i % 27:02d},{city},{product},{i % 13 + 1}")
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    columns, _ = sniff_file(csv, "csv")
    request = HeavyReportRequest.model_validate(
        {
            "report_type": "pdf",
            "dataset": {"source": "upload", "dataset_id": "d1"},
            "title": TITLE,
            "group_by": ["city", "product"],
            "detail_rows": 40,
        }
    )
    params = validate_request(request, columns)
    params.update(dataset_path=str(csv), dataset_format="csv", dataset_name=csv.name)
    return pypdf.PdfReader(str(_build(tmp_path, params)))


def _fonts(reader: pypdf.PdfReader) -> dict[str, Any]:
    """Every font any page uses, by base name, with its descriptor."""
    found: dict[str, Any] = {}
    for page in reader.pages:
        for font in page["/Resources"].get("/Font", {}).values():
            font = font.get_object()
            found[str(font["/BaseFont"])] = font
    return found


def _lines(reader: pypdf.PdfReader) -> list[set[str]]:
    return [{line.strip() for line in page.extract_text().splitlines()} for page in reader.pages]


def test_fonts_are_embedded_subsets_and_never_helvetica(unicode_pdf: pypdf.PdfReader) -> None:
    fonts = _fonts(unicode_pdf)
    assert {SUBSET.sub("", name) for name in fonts} == {
        "DejaVuSans",
        "DejaVuSans-Bold",
        "DroidSansFallback",
    }, fonts.keys()
    for name, font in fonts.items():
        assert SUBSET.match(name), f"{name} is not a subset"
        assert font["/Subtype"] == "/TrueType"
        descriptor = font["/FontDescriptor"].get_object()
        embedded = descriptor["/FontFile2"].get_object().get_data()
        # Only the glyphs used: DejaVu Sans is 760 kB whole, the CJK face 3.4 MB.
        assert 1_000 < len(embedded) < 120_000, (name, len(embedded))
        assert "/ToUnicode" in font
    assert not any("Helvetica" in name for name in fonts)


def test_every_string_of_the_data_is_extracted_as_written(unicode_pdf: pypdf.PdfReader) -> None:
    pages = _lines(unicode_pdf)
    assert unicode_pdf.metadata is not None and unicode_pdf.metadata.title == TITLE
    # The running head of every page after the cover: the title, on one line.
    assert all(TITLE in lines for lines in pages[1:])
    every = set().union(*pages)
    for text in CITIES + PRODUCTS:
        # A table cell, a chart label, a detail row: each a line of its own...
        assert text in every, f"{text!r} not extracted"
        # ...and the heading of a group's page, for each city.
    for city in CITIES:
        assert any(f"city: {city}" in lines for lines in pages), city
    detail = [lines for lines in pages if {"day", "city", "product", "amount"} <= lines]
    assert detail and all(text in set().union(*detail) for text in CITIES + PRODUCTS)


def test_chart_labels_are_drawn_in_the_unicode_fonts(tmp_path: Path) -> None:
    labels = ["Łódź", "東京", "Москва", "القاهرة"]
    drawings = [
        charts.bar_chart(
            labels, [4, 3, 2, 1], title="Umsatz: 売上", font=SANS, bold_font=SANS_BOLD
        ),
        charts.pie_chart(labels, [4, 3, 2, 1], title="Доля", font=SANS, bold_font=SANS_BOLD),
    ]
    for i, drawing in enumerate(drawings):
        path = tmp_path / f"chart{i}.pdf"
        renderPDF.drawToFile(drawing, str(path))
        reader = pypdf.PdfReader(str(path))
        assert not any("Helvetica" in name for name in _fonts(reader))
        text = reader.pages[0].extract_text()
        assert all(label in text for label in labels), text
    assert "Umsatz: 売上" in pypdf.PdfReader(str(tmp_path / "chart0.pdf")).pages[0].extract_text()


def test_a_latin_report_stays_small_and_embeds_no_cjk_face(tmp_path: Path) -> None:
    request = HeavyReportRequest.model_validate(
        {
            "report_type": "pdf",
            "dataset": {"source": "demo", "rows": 500, "seed": 3},
            "group_by": ["region"],
            "detail_rows": 20,
        }
    )
    path = _build(tmp_path, validate_request(request, columns_of_demo("sales")))
    reader = pypdf.PdfReader(str(path))
    assert {SUBSET.sub("", name) for name in _fonts(reader)} == {"DejaVuSans", "DejaVuSans-Bold"}
    # About 40 kB of font subsets on top of what Helvetica (not embedded) cost.
    assert path.stat().st_size < 150_000


# ----------------------------------------------------------------------------- file names


def _parse(header: str) -> tuple[str, str]:
    """(filename, filename*) of a Content-Disposition, the second decoded per RFC 5987 (a
    recipient that knows `filename*` takes it: RFC 6266, 4.3). Both in the order of RFC 6266's
    example, the ASCII one first for parsers that stop at the first."""
    match = re.fullmatch(r"""attachment; filename="([ -~]*)"; filename\*=UTF-8''([!-~]+)""", header)
    assert match, header
    assert not re.search(r"[^A-Za-z0-9%!#$&+\-.^_`|~]", match.group(2)), "not RFC 5987 attr-chars"
    return match.group(1), unquote(match.group(2), encoding="utf-8", errors="strict")


def test_download_names_keep_the_title() -> None:
    assert download_name(TITLE, "Umsatz-nach-Stadt-Z-rich-d.pdf") == NAME
    assert download_name("東京 / 大阪", "report.xlsx") == "東京 - 大阪.xlsx"
    assert download_name(None, "report.pdf") == "report.pdf"
    assert download_name(' "\\ ', "report.pdf") == "report.pdf"
    long = download_name("東" * 200, "report.pdf")
    assert long.endswith(".pdf") and len(long.encode()) <= 200
    assert ascii_fallback(NAME) == ASCII_NAME
    assert ascii_fallback("東京.pdf") == "download.pdf"
    assert ascii_fallback("القاهرة 2024.pdf") == "2024.pdf"
    assert content_disposition("report.pdf") == 'attachment; filename="report.pdf"'
    plain, extended = _parse(content_disposition('100% "echt"; Łódź.pdf'))
    assert extended == '100% "echt"; Łódź.pdf'
    assert plain.isascii() and '"' not in plain and "%" not in plain


def test_a_streamed_download_sends_the_same_header() -> None:
    response = _send(Download(NAME, "application/pdf", 3, chunks=iter([b"pdf"])), NAME)
    assert _parse(response.headers["content-disposition"]) == (ASCII_NAME, NAME)


def test_download_round_trips_a_non_ascii_title(
    service: Service, api: TestClient, auth: dict[str, str]
) -> None:
    response = api.post(
        "/reports/heavy",
        json={
            "report_type": "pdf",
            "title": TITLE,
            "dataset": {"source": "demo", "rows": 300, "seed": 5},
            "group_by": ["region"],
            "detail_rows": 10,
        },
        headers=auth,
    )
    assert response.status_code == 202, response.text
    job = service.wait(response.json()["job_id"], auth, timeout=120)
    assert job["status"] == "completed", job
    download = api.get(job["download_url"], headers=auth)
    assert download.status_code == 200
    header = download.headers["content-disposition"]
    assert header.startswith("attachment; ")
    assert _parse(header) == (ASCII_NAME, NAME)
    reader = pypdf.PdfReader(io.BytesIO(download.content))
    assert reader.metadata is not None and reader.metadata.title == TITLE
