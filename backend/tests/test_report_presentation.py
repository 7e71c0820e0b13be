"""Reports that do not mislead: partial periods marked and left out of period-over-period
change, value axes of bar charts from zero, and an upload described by its real format.
Real reports built by the service's workers, opened as files."""

from __future__ import annotations

import re
import zipfile
from datetime import date, datetime
from io import BytesIO

import openpyxl
import pytest
from fastapi.testclient import TestClient

from app.reports.statistics import is_partial, period_end
from tests.conftest import Service
from tests.test_heavy_reports import finish, submit, upload

# 2024-01-29 .. 2024-07-02: Q1 has three days of data, Q2 is whole, Q3 has two days.
DAYS = [date(2024, 1, 29), date(2024, 1, 30), date(2024, 1, 31)]
DAYS += [date(2024, m, d) for m in (4, 5, 6) for d in (1, 10, 20, 30)]
DAYS += [date(2024, 7, 1), date(2024, 7, 2)]
CSV = "day,shop,amount\n" + "".join(
    f"{day.isoformat()},{'north' if i % 2 else 'south'},{1_000_000 + i * 1000}\n"
    for i, day in enumerate(DAYS)
)


@pytest.mark.parametrize(
    ("start", "period", "end"),
    [
        (date(2024, 1, 1), "quarter", date(2024, 4, 1)),
        (date(2024, 11, 1), "quarter", date(2025, 2, 1)),
        (date(2024, 12, 1), "month", date(2025, 1, 1)),
        (date(2024, 1, 1), "year", date(2025, 1, 1)),
        (date(2024, 1, 1), "week", date(2024, 1, 8)),
        (date(2024, 1, 1), "day", date(2024, 1, 2)),
    ],
)
def test_period_end(start: date, period: str, end: date) -> None:
    assert period_end(start, period) == end


def test_is_partial() -> None:
    first, last = datetime(2024, 1, 29, 10), date(2024, 7, 2)
    assert is_partial(date(2024, 1, 1), "quarter", first, last)
    assert not is_partial(date(2024, 4, 1), "quarter", first, last)
    assert is_partial(date(2024, 7, 1), "quarter", first, last)
    assert not is_partial(date(2024, 1, 1), "quarter", date(2024, 1, 1), date(2024, 3, 31))


def test_partial_periods_are_marked_and_compare_nothing(
    service: Service, api: TestClient, auth: dict[str, str]
) -> None:
    dataset = upload(api, auth, "shops.csv", CSV.encode())
    ref = {"source": "upload", "dataset_id": dataset["dataset_id"]}
    body = {"report_type": "analysis", "dataset": ref, "measures": ["amount"]}
    job, _, _ = finish(service, api, auth, submit(api, auth, {**body, "period": "quarter"}))
    points = job["result"]["trend"]["points"]
    assert [p["partial"] for p in points] == [True, False, True]
    assert all(p["growth_pct"]["amount"] is None for p in points)  # only partial neighbours
    assert job["result"]["trend"]["first_to_last_growth_pct"] is None  # one whole period

    excel = {**body, "report_type": "excel", "period": "quarter", "group_by": ["shop"]}
    _, content, _ = finish(service, api, auth, submit(api, auth, excel))
    summary = openpyxl.load_workbook(BytesIO(content))["Summary"]
    labels = [str(c.value) for row in summary.iter_rows() for c in row if c.value]
    assert any(label.endswith("(partial)") for label in labels), labels


def test_bar_charts_start_at_zero_and_an_upload_says_its_format(
    service: Service, api: TestClient, auth: dict[str, str]
) -> None:
    dataset = upload(api, auth, "shops.csv", CSV.encode())
    ref = {"source": "upload", "dataset_id": dataset["dataset_id"]}
    body = {"report_type": "excel", "dataset": ref, "measures": ["amount"], "group_by": ["shop"]}
    _, content, _ = finish(service, api, auth, submit(api, auth, body))
    with zipfile.ZipFile(BytesIO(content)) as workbook:
        charts = {
            name: workbook.read(name).decode()
            for name in workbook.namelist()
            if re.fullmatch(r"xl/charts/chart\d+\.xml", name)
        }
    bars = [xml for xml in charts.values() if "<c:barChart>" in xml]
    assert bars, list(charts)
    for xml in bars:
        value_axis = re.search(r"<c:valAx>.*?</c:valAx>", xml, re.S)
        assert value_axis and '<c:min val="0"/>' in value_axis.group(0), xml[:400]

    job, _, _ = finish(service, api, auth, submit(api, auth, {**body, "report_type": "analysis"}))
    description = str(job["result"].get("source") or job["result"])
    assert "Uploaded CSV dataset" in description, description
