"""Heavy reports through the API, end to end in embedded mode (real worker processes): submit,
follow, download and open the file; datasets uploaded as CSV and Parquet; privacy; the
`reportctl submit` command against the same app.
"""

from __future__ import annotations

import argparse
import io
import time
import zipfile
from pathlib import Path
from typing import Any

import duckdb
import openpyxl
import pypdf
import pytest
from fastapi.testclient import TestClient

from app.cli_submit import add_submit_parser, render_bar, run_submit
from app.reports.demo_datasets import demo_arrays
from tests.conftest import Service

ROWS = 3_000


def submit(api: TestClient, auth: dict[str, str], body: dict[str, Any]) -> str:
    response = api.post("/reports/heavy", json=body, headers=auth)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status_url"] == f"/reports/jobs/{accepted['job_id']}"
    return str(accepted["job_id"])


def finish(
    service: Service, api: TestClient, auth: dict[str, str], job_id: str
) -> tuple[dict[str, Any], bytes, str]:
    """Wait for completion; return the job, the downloaded bytes and their content type."""
    job = service.wait(job_id, auth, timeout=120)
    assert job["status"] == "completed", job
    assert job["progress"]["percent"] == 100
    response = api.get(job["download_url"], headers=auth)
    assert response.status_code == 200
    return job, response.content, response.headers["content-type"]


def demo(kind: str, **extra: Any) -> dict[str, Any]:
    return {
        "report_type": kind,
        "dataset": {"source": "demo", "rows": ROWS, "seed": 9},
        "detail_rows": 200,
        **extra,
    }


def upload(api: TestClient, auth: dict[str, str], name: str, data: bytes) -> dict[str, Any]:
    response = api.post(
        "/datasets", files={"file": (name, data, "application/octet-stream")}, headers=auth
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


# ----------------------------------------------------------------------------- demo data


def test_pdf_end_to_end(service: Service, api: TestClient, auth: dict[str, str]) -> None:
    job_id = submit(api, auth, demo("pdf", title="Quarterly sales"))
    job, content, mime = finish(service, api, auth, job_id)
    assert mime == "application/pdf"
    reader = pypdf.PdfReader(io.BytesIO(content))
    assert len(reader.pages) == job["result"]["pages"] > 10
    assert "Quarterly sales" in reader.pages[0].extract_text()
    assert job["result"]["rows"] == ROWS and job["result"]["detail_rows"] == 200


def test_excel_end_to_end(service: Service, api: TestClient, auth: dict[str, str]) -> None:
    job_id = submit(api, auth, demo("excel", group_by=["channel"]))
    job, content, mime = finish(service, api, auth, job_id)
    assert mime.startswith("application/vnd.openxmlformats-officedocument.spreadsheetml")
    wb = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    assert wb.sheetnames == ["Summary", "By channel", "Data"]
    data = list(wb["Data"].iter_rows(values_only=True))
    assert len(data) == ROWS + 1
    revenue = demo_arrays("sales", ROWS, 9)["revenue"]
    assert sum(r[8] for r in data[1:]) == pytest.approx(float(revenue.sum()))
    with zipfile.ZipFile(io.BytesIO(content)) as z:
        assert sum(n.startswith("xl/charts/chart") for n in z.namelist()) == 4
    assert job["result"]["sheets"] == wb.sheetnames


def test_analysis_end_to_end(service: Service, api: TestClient, auth: dict[str, str]) -> None:
    job_id = submit(api, auth, demo("analysis", measures=["revenue"], period="quarter"))
    job, content, mime = finish(service, api, auth, job_id)
    assert mime.startswith("text/html")
    result = job["result"]
    revenue = demo_arrays("sales", ROWS, 9)["revenue"]
    assert result["totals"]["revenue"]["sum"] == pytest.approx(float(revenue.sum()))
    assert result["trend"]["period"] == "quarter" and len(result["trend"]["points"]) == 12
    assert "Tukey" in result["outliers"]["method"]
    assert b"<svg" in content and b"Outliers" in content


def test_bad_requests_are_422_with_the_column_named(api: TestClient, auth: dict[str, str]) -> None:
    response = api.post("/reports/heavy", json=demo("excel", measures=["revnue"]), headers=auth)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "'revnue'" in detail and "did you mean 'revenue'" in detail and "margin" in detail
    response = api.post("/reports/heavy", json=demo("excel", group_by=["colour"]), headers=auth)
    assert response.status_code == 422 and "'colour' in group_by" in response.json()["detail"]
    for body in (
        {"report_type": "word"},
        {**demo("pdf"), "dataset": {"source": "demo", "rows": 10**9}},
    ):
        assert api.post("/reports/heavy", json=body, headers=auth).status_code == 422
    assert api.post("/reports/heavy", json=demo("pdf")).status_code == 401


def test_cancelling_a_running_report(
    service: Service, api: TestClient, auth: dict[str, str]
) -> None:
    body = {"report_type": "excel", "dataset": {"source": "demo", "rows": 3_000_000}}
    job_id = submit(api, auth, body)
    service.wait(job_id, auth, statuses={"started"}, timeout=60)
    time.sleep(0.5)
    assert api.post(f"/reports/jobs/{job_id}/cancel", headers=auth).status_code == 200
    started = time.monotonic()
    job = service.wait(job_id, auth, timeout=30)
    assert job["status"] == "cancelled"
    assert time.monotonic() - started < 10


# ----------------------------------------------------------------------------- uploads


CSV = "day,shop,amount,units\n" + "".join(
    f"2024-{1 + i % 12:02d}-{1 + i % 27:02d},shop {i % 5},{(i * 37) % 1000 / 10:.1f},{i % 9}\n"
    for i in range(500)
)


def _parquet_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "sales.parquet"
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT DATE '2024-01-01' + (range % 90)::INTEGER AS sold_on,
                               ['a', 'b', 'c'][1 + range % 3] AS team,
                               (range % 17) * 1.5 AS value
                        FROM range(700)) TO '{path}' (FORMAT parquet)""")
    con.close()
    return path.read_bytes()


def test_uploaded_csv_and_parquet_build_reports(
    service: Service, api: TestClient, auth: dict[str, str], tmp_path: Path
) -> None:
    csv = upload(api, auth, "shops.csv", CSV.encode())
    assert csv["format"] == "csv" and csv["row_count"] == 500
    assert [(c["name"], c["type"], c["kind"]) for c in csv["columns"]] == [
        ("day", "DATE", "date"),
        ("shop", "VARCHAR", "string"),
        ("amount", "DOUBLE", "number"),
        ("units", "BIGINT", "integer"),
    ]
    parquet = upload(api, auth, "sales.parquet", _parquet_bytes(tmp_path))
    assert parquet["format"] == "parquet" and parquet["row_count"] == 700
    listed = api.get("/datasets", headers=auth).json()
    assert {d["dataset_id"] for d in listed["items"]} >= {csv["dataset_id"], parquet["dataset_id"]}

    job_id = submit(
        api,
        auth,
        {
            "report_type": "excel",
            "group_by": ["shop"],
            "dataset": {"source": "upload", "dataset_id": csv["dataset_id"]},
        },
    )
    job, content, _ = finish(service, api, auth, job_id)
    wb = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    assert wb.sheetnames == ["Summary", "By shop", "Data"]
    rows = list(wb["Data"].iter_rows(values_only=True))
    assert rows[0] == ("day", "shop", "amount", "units") and len(rows) == 501
    expected = sum(float(line.split(",")[2]) for line in CSV.splitlines()[1:])
    assert sum(r[2] for r in rows[1:]) == pytest.approx(expected)
    assert job["result"]["groups"] == {"shop": 5}

    job_id = submit(
        api,
        auth,
        {
            "report_type": "analysis",
            "group_by": ["team"],
            "dataset": {"source": "upload", "dataset_id": parquet["dataset_id"]},
        },
    )
    job, _, _ = finish(service, api, auth, job_id)
    result = job["result"]
    assert result["measures"] == ["value"] and result["date_column"] == "sold_on"
    assert result["totals"]["value"]["sum"] == pytest.approx(
        sum((i % 17) * 1.5 for i in range(700))
    )
    assert result["title"] == "Data analysis: sales.parquet"

    response = api.post(
        "/reports/heavy",
        headers=auth,
        json={
            "report_type": "pdf",
            "measures": ["amount", "revenue"],
            "dataset": {"source": "upload", "dataset_id": csv["dataset_id"]},
        },
    )
    assert response.status_code == 422
    assert "'revenue'" in response.json()["detail"]
    assert "day, shop, amount, units" in response.json()["detail"]


def test_datasets_belong_to_their_uploader(
    service: Service, api: TestClient, auth: dict[str, str], other_auth: dict[str, str]
) -> None:
    dataset = upload(api, auth, "mine.csv", CSV.encode())
    dataset_id = dataset["dataset_id"]
    assert api.get(f"/datasets/{dataset_id}", headers=other_auth).status_code == 404
    assert api.delete(f"/datasets/{dataset_id}", headers=other_auth).status_code == 404
    listed = api.get("/datasets", headers=other_auth).json()["items"]
    assert dataset_id not in {d["dataset_id"] for d in listed}
    response = api.post(
        "/reports/heavy",
        headers=other_auth,
        json={"report_type": "pdf", "dataset": {"source": "upload", "dataset_id": dataset_id}},
    )
    assert response.status_code == 404

    stored = list((service.settings.storage_root / "datasets").rglob(f"{dataset_id}.parquet"))
    assert len(stored) == 1
    assert api.delete(f"/datasets/{dataset_id}", headers=auth).status_code == 204
    assert api.get(f"/datasets/{dataset_id}", headers=auth).status_code == 404
    assert not stored[0].exists()


@pytest.mark.parametrize(
    ("name", "data", "fragment"),
    [
        ("empty.csv", b"", "empty"),
        ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "not a dataset file"),
        ("latin1.csv", "name,city\nJosé,Zürich\n".encode("latin-1"), "not UTF-8"),
        ("header.csv", b"a,b,c\n", "no data rows"),
        ("cut.parquet", b"PAR1" + bytes(100), "truncated"),
    ],
)
def test_garbage_uploads_are_refused(
    api: TestClient, auth: dict[str, str], name: str, data: bytes, fragment: str
) -> None:
    response = api.post("/datasets", files={"file": (name, data)}, headers=auth)
    assert response.status_code == 422, response.text
    assert fragment in response.json()["detail"]


def test_upload_over_the_limit_is_413(
    service: Service, api: TestClient, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service.settings, "MAX_UPLOAD_BYTES", 1_000)
    response = api.post("/datasets", files={"file": ("big.csv", CSV.encode())}, headers=auth)
    assert response.status_code == 413
    assert "MAX_UPLOAD_BYTES" in response.json()["detail"]
    leftovers = list(service.settings.scratch_dir.glob("dataset-*"))
    assert leftovers == []


# ----------------------------------------------------------------------------- reportctl


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="reportctl")
    add_submit_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["submit", *argv])


def test_reportctl_submit_waits_and_saves(
    api: TestClient, auth: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = auth["Authorization"].split()[1]
    out, err = io.StringIO(), io.StringIO()
    target = tmp_path / "report.xlsx"
    args = _parse("excel", "--rows", "2000", "--wait", "--out", str(target), "--token", token)
    assert run_submit(args, client=api, stdout=out, stderr=err) == 0, err.getvalue()
    assert out.getvalue().strip() == str(target)
    wb = openpyxl.load_workbook(target, read_only=True)
    assert len(list(wb["Data"].iter_rows(values_only=True))) == 2001
    progress = err.getvalue()
    assert "accepted" in progress and "] 100%  completed" in progress and "saved" in progress

    out = io.StringIO()
    assert (
        run_submit(
            _parse("pdf", "--rows", "100", "--token", token),
            client=api,
            stdout=out,
            stderr=io.StringIO(),
        )
        == 0
    )
    assert len(out.getvalue().strip()) == 36  # just the job id, nothing waited for

    err = io.StringIO()
    args = _parse("pdf", "--measures", "revnue", "--token", token)
    assert run_submit(args, client=api, stdout=io.StringIO(), stderr=err) == 2
    assert "HTTP 422" in err.getvalue() and "revnue" in err.getvalue()
    monkeypatch.delenv("REPORTCTL_TOKEN", raising=False)
    err = io.StringIO()
    assert run_submit(_parse("pdf"), client=api, stdout=io.StringIO(), stderr=err) == 2
    assert "no token" in err.getvalue()
    monkeypatch.setenv("REPORTCTL_TOKEN", token)
    assert (
        run_submit(
            _parse("pdf", "--rows", "50"), client=api, stdout=io.StringIO(), stderr=io.StringIO()
        )
        == 0
    )


def test_progress_bar_rendering() -> None:
    line = render_bar(35.0, "started", "Data rows 350,000 of 1,000,000", 12.4)
    assert line.startswith("[##########--------------------]  35%  started")
    assert line.endswith("12s")
    assert render_bar(100, "completed", "", 1).startswith("[" + "#" * 30 + "] 100%")


def test_csv_types_cover_a_late_odd_value(tmp_path: Path) -> None:
    """Types sniffed from a sample would be too narrow; the conversion notices and re-sniffs
    the whole file instead of storing a dataset that fails later."""
    from app.reports.dataset_store import convert_to_parquet

    lines = ["id,value,day"] + [f"{i},{i},2024-01-0{1 + i % 9}" for i in range(30_000)]
    (tmp_path / "late.csv").write_text("\n".join([*lines, "30000,3.5,unknown"]) + "\n")
    columns, rows = convert_to_parquet(tmp_path / "late.csv", "csv", tmp_path / "late.parquet")
    assert columns == {"id": "BIGINT", "value": "DOUBLE", "day": "VARCHAR"}
    assert rows == 30_001
