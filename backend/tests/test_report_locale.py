"""`locale` and `currency` on POST /reports/heavy: numbers, dates and money as the audience
reads them, in the PDF (text extracted), the workbook (cell formats) and the analysis page.
A locale or currency nobody knows is a 422 at submit."""

from __future__ import annotations

import io
from datetime import date

import openpyxl
import pypdf
import pytest
from fastapi.testclient import TestClient

from app.reports.locale_style import PLAIN, style_for
from tests.conftest import Service
from tests.test_heavy_reports import finish, submit, upload

CSV = "day,shop,amount\n2024-03-05,north,1234.56\n2024-03-06,south,1000\n"
SPACES = str.maketrans({"\xa0": " ", "\u202f": " "})


@pytest.mark.parametrize(
    ("locale", "number", "money", "percent", "day"),
    [
        ("en", "1,234.56", "€1,234.56", "+12.3%", "Mar 5, 2024"),
        ("de", "1.234,56", "1.234,56 €", "+12,3 %", "05.03.2024"),
        ("fr", "1 234,56", "1 234,56 €", "+12,3 %", "5 mars 2024"),
        ("ja", "1,234.56", "€1,234.56", "+12.3%", "2024/03/05"),
    ],
)
def test_styles(locale: str, number: str, money: str, percent: str, day: str) -> None:
    style = style_for(locale, "EUR")
    assert style.number(1234.56).translate(SPACES) == number
    assert style.money(1234.56).translate(SPACES) == money
    assert style.percent(12.34, signed=True).translate(SPACES) == percent
    assert style.date(date(2024, 3, 5)).translate(SPACES) == day
    assert style.money(-5).translate(SPACES).startswith("-")


def test_no_locale_keeps_the_plain_formats() -> None:
    assert (PLAIN.number(1234.5), PLAIN.date(date(2024, 3, 5))) == ("1,234.50", "2024-03-05")


def _body(api: TestClient, auth: dict[str, str], kind: str) -> dict[str, object]:
    dataset = upload(api, auth, "shops.csv", CSV.encode())
    return {
        "report_type": kind,
        "dataset": {"source": "upload", "dataset_id": dataset["dataset_id"]},
        "measures": ["amount"],
        "group_by": ["shop"],
        "locale": "de",
        "currency": "EUR",
    }


def test_a_german_pdf(service: Service, api: TestClient, auth: dict[str, str]) -> None:
    job_id = submit(api, auth, _body(api, auth, "pdf"))
    _, content, _ = finish(service, api, auth, job_id)
    text = "".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(content)).pages)
    text = text.translate(SPACES)
    assert "2.234,56 €" in text, text[:2000]  # the total of amount, as money
    assert "1.234,56 €" in text


def test_a_german_workbook(service: Service, api: TestClient, auth: dict[str, str]) -> None:
    job_id = submit(api, auth, _body(api, auth, "excel"))
    _, content, _ = finish(service, api, auth, job_id)
    sheet = openpyxl.load_workbook(io.BytesIO(content))["Summary"]
    formats = {cell.number_format for row in sheet.iter_rows() for cell in row}
    assert '#,##0.00 "€"' in formats, formats
    assert "dd.mm.yyyy" in formats, formats


def test_a_german_analysis_page(service: Service, api: TestClient, auth: dict[str, str]) -> None:
    job_id = submit(api, auth, _body(api, auth, "analysis"))
    _, content, _ = finish(service, api, auth, job_id)
    assert "2.235" in content.decode()  # 2,234.56 with no decimals past 1,000, German


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [("locale", "xx-Nowhere", "locale"), ("currency", "XYZ", "currency"), ("locale", "1", "")],
)
def test_an_unknown_locale_or_currency_is_refused(
    api: TestClient, auth: dict[str, str], field: str, value: str, named: str
) -> None:
    body = {"report_type": "pdf", "dataset": {"source": "demo", "rows": 100}, field: value}
    response = api.post("/reports/heavy", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert field in response.text and (not named or named in response.json()["detail"])
