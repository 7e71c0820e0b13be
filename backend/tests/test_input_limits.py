"""Every input has a size limit, checked before the work it would cost (issue 12).

Real files are generated here: a TIFF whose later frames are huge, a Parquet file of millions
of rows in a few kilobytes, a CSV of one enormous line. Each is refused over HTTP with a 4xx
that names the limit and its setting, and without the work the limit exists to prevent.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from PIL import Image, TiffImagePlugin

from app.api.errors import BodySizeLimit
from app.documents.sniff import ImageTooLarge, PixelLimits, inspect_document
from app.documents.thumbnails import write_thumbnails_zip
from app.reports.datasets import open_dataset
from tests.conftest import DATABASES, Service, running_service

MAX_PIXELS = 4_000_000
MAX_TOTAL_PIXELS = 10_000_000
MAX_ROWS = 100_000
MAX_COLUMNS = 50
MAX_LINE = 64 * 1024
REPORT_ROWS = 1_000_000
EXCEL_ROWS = 50_000
UPLOAD_LIMIT = 8 * 1024 * 1024
JSON_LIMIT = 1024 * 1024


@pytest.fixture(scope="module", params=DATABASES)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    pillow_limit = Image.MAX_IMAGE_PIXELS
    with running_service(
        request.param,
        tmp_path_factory.mktemp(f"limits-{request.param}"),
        MAX_UPLOAD_BYTES=UPLOAD_LIMIT,
        MAX_JSON_BODY_BYTES=JSON_LIMIT,
        DOCUMENT_MAX_PIXELS=MAX_PIXELS,
        DOCUMENT_MAX_TOTAL_PIXELS=MAX_TOTAL_PIXELS,
        DATASET_MAX_ROWS=MAX_ROWS,
        DATASET_MAX_COLUMNS=MAX_COLUMNS,
        DATASET_MAX_LINE_BYTES=MAX_LINE,
        REPORT_MAX_ROWS=REPORT_ROWS,
        REPORT_MAX_EXCEL_ROWS=EXCEL_ROWS,
    ) as svc:
        yield svc
    Image.MAX_IMAGE_PIXELS = pillow_limit  # the API set it from DOCUMENT_MAX_PIXELS


def tiff_bytes(sizes: list[tuple[int, int]]) -> bytes:
    """A deflated TIFF with one black frame per size: a few KB, whatever the pixels."""
    frames = [Image.new("L", size) for size in sizes]
    buffer = io.BytesIO()
    frames[0].save(
        buffer, format="TIFF", save_all=True, append_images=frames[1:], compression="tiff_deflate"
    )
    return buffer.getvalue()


def upload_document(service: Service, auth: dict[str, str], name: str, data: bytes) -> Any:
    return service.client.post(
        "/documents", headers=auth, files={"file": (name, data, "application/octet-stream")}
    )


def upload_dataset(service: Service, auth: dict[str, str], name: str, data: bytes) -> Any:
    return service.client.post(
        "/datasets", headers=auth, files={"file": (name, data, "application/octet-stream")}
    )


# ------------------------------------------------------------------------------ documents
def test_every_tiff_frame_is_checked_before_decoding(
    service: Service, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[tuple[int, int]] = []
    real_load = TiffImagePlugin.TiffImageFile.load

    def counting_load(self: TiffImagePlugin.TiffImageFile) -> Any:
        loads.append(self.size)
        return real_load(self)

    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "load", counting_load)
    # A small first frame (all that was checked before), then one over the per-frame limit.
    bomb = tiff_bytes([(10, 10), (10, 10), (4000, 4000)])
    assert len(bomb) < 200_000
    response = upload_document(service, auth, "scan.tiff", bomb)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "page 3 is 4000x4000" in detail and "DOCUMENT_MAX_PIXELS" in detail
    assert f"{MAX_PIXELS:,}" in detail
    assert loads == [], "a frame was decoded before every frame's size was checked"
    assert Image.MAX_IMAGE_PIXELS == MAX_PIXELS

    # Each frame within the per-frame limit, together over the budget.
    many = tiff_bytes([(1900, 1900)] * 4)  # 3.6 M pixels each, 14.4 M in all
    response = upload_document(service, auth, "many.tiff", many)
    assert response.status_code == 422, response.text
    assert "DOCUMENT_MAX_TOTAL_PIXELS" in response.json()["detail"]
    assert f"{MAX_TOTAL_PIXELS:,}" in response.json()["detail"]
    assert loads == []

    fine = upload_document(service, auth, "fine.tiff", tiff_bytes([(300, 200)] * 3))
    assert fine.status_code == 201, fine.text
    assert fine.json()["document"]["pages"] == 3
    assert set(loads) == {(300, 200)}  # decoded to catch corruption, once checked


def test_a_huge_first_frame_is_refused_from_its_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    Image.new("1", (5000, 5000)).save(path, format="PNG")  # 25 M pixels in a few KB
    limits = PixelLimits(per_frame=MAX_PIXELS, total=MAX_TOTAL_PIXELS)
    with pytest.raises(ImageTooLarge, match="DOCUMENT_MAX_PIXELS"):
        inspect_document(path, max_pages=5, limits=limits)


def test_thumbnails_check_each_frame_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.tiff"
    path.write_bytes(tiff_bytes([(10, 10), (4000, 4000)]))
    with pytest.raises(Image.DecompressionBombError, match="page 2 is 4000x4000"):
        write_thumbnails_zip(
            path, "image/tiff", sizes=[64], pages=2, dest=tmp_path / "t.zip", max_pixels=MAX_PIXELS
        )


# ------------------------------------------------------------------------------ bodies
def test_only_upload_routes_take_multipart_or_large_bodies(
    service: Service, auth: dict[str, str]
) -> None:
    five_mb = b"x" * (5 * 1024 * 1024)
    response = service.client.post(
        "/reports/dummy", headers=auth, files={"file": ("a.bin", five_mb)}
    )
    assert response.status_code == 413, response.text
    assert "MAX_JSON_BODY_BYTES" in response.json()["detail"]
    assert str(JSON_LIMIT) in response.json()["detail"]

    # Without a Content-Length (chunked), the body is cut off at the limit too.
    def chunks() -> Iterator[bytes]:
        for _ in range(80):
            yield b"y" * 65536

    chunked = service.client.post(
        "/reports/dummy",
        headers={**auth, "content-type": "multipart/form-data; boundary=x"},
        content=chunks(),
    )
    assert chunked.status_code == 413

    # The upload routes take it (and refuse it for what it is, not for its size).
    document = upload_document(service, auth, "a.pdf", five_mb)
    assert document.status_code == 415, document.text
    # The bulk route keeps its larger JSON limit.
    bulk = service.client.post(
        "/notifications/bulk",
        headers={**auth, "content-type": "application/json"},
        content=b'{"padding": "' + b"z" * (2 * JSON_LIMIT) + b'"}',
    )
    assert bulk.status_code != 413, bulk.text


def test_a_refused_body_is_not_read_past_the_limit() -> None:
    limit = 1024 * 1024
    chunk = 64 * 1024
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):  # reads everything it is given
            pass

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += chunk
        return {"type": "http.request", "body": b"x" * chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    middleware = BodySizeLimit(
        app, json_limit=limit, upload_limit=200 * limit, upload_routes=[("POST", "/datasets")]
    )
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/reports/dummy",
        "headers": [(b"content-type", b"multipart/form-data; boundary=x")],
    }
    asyncio.run(middleware(scope, receive, send))  # type: ignore[arg-type]
    assert sent[0]["status"] == 413
    assert pulled <= limit + chunk  # an endless body, read only to the limit


# ------------------------------------------------------------------------------ datasets
def test_parquet_row_count_is_checked_from_its_footer(
    service: Service, auth: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "rows.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT 1 AS one FROM range(20000000)) TO '{path}' (FORMAT parquet)")
    con.close()
    data = path.read_bytes()
    assert len(data) < 200_000
    started = time.monotonic()
    response = upload_dataset(service, auth, "rows.parquet", data)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert "20,000,000 rows" in detail and "DATASET_MAX_ROWS" in detail
    assert f"{MAX_ROWS:,}" in detail
    assert time.monotonic() - started < 5


def test_csv_rows_columns_and_line_length_are_capped(
    service: Service, auth: dict[str, str]
) -> None:
    rows = "n\n" + "".join(f"{i}\n" for i in range(MAX_ROWS + 10))
    response = upload_dataset(service, auth, "rows.csv", rows.encode())
    assert response.status_code == 422, response.text
    assert f"more than {MAX_ROWS:,} rows" in response.json()["detail"]
    assert "DATASET_MAX_ROWS" in response.json()["detail"]

    wide = ",".join(f"c{i}" for i in range(MAX_COLUMNS + 1)) + "\n"
    wide += ",".join("1" for _ in range(MAX_COLUMNS + 1)) + "\n"
    response = upload_dataset(service, auth, "wide.csv", wide.encode())
    assert response.status_code == 422, response.text
    assert "DATASET_MAX_COLUMNS" in response.json()["detail"]

    one_line = b"a,b\n" + b"x" * (6 * 1024 * 1024) + b",1\n"
    started = time.monotonic()
    response = upload_dataset(service, auth, "line.csv", one_line)
    assert response.status_code == 422, response.text
    assert "DATASET_MAX_LINE_BYTES" in response.json()["detail"]
    assert time.monotonic() - started < 3

    ok = upload_dataset(service, auth, "ok.csv", b"a,b\n" + b"1,2\n" * 100)
    assert ok.status_code == 201, ok.text


# ------------------------------------------------------------------------------ outputs
def test_report_outputs_are_capped_at_submit(service: Service, auth: dict[str, str]) -> None:
    def heavy(kind: str, rows: int) -> Any:
        body = {"report_type": kind, "dataset": {"source": "demo", "rows": rows}}
        return service.client.post("/reports/heavy", json=body, headers=auth)

    response = heavy("pdf", REPORT_ROWS + 1)
    assert response.status_code == 422, response.text
    assert "REPORT_MAX_ROWS" in response.json()["detail"]
    assert f"{REPORT_ROWS:,}" in response.json()["detail"]

    response = heavy("excel", EXCEL_ROWS + 1)
    assert response.status_code == 422, response.text
    assert "REPORT_MAX_EXCEL_ROWS" in response.json()["detail"]
    assert f"{EXCEL_ROWS:,}" in response.json()["detail"]

    csv = b"n,v\n" + b"".join(f"{i},{i % 7}\n".encode() for i in range(EXCEL_ROWS + 5))
    uploaded = upload_dataset(service, auth, "big.csv", csv)
    assert uploaded.status_code == 201, uploaded.text
    body = {
        "report_type": "excel",
        "dataset": {"source": "upload", "dataset_id": uploaded.json()["dataset_id"]},
    }
    response = service.client.post("/reports/heavy", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert "REPORT_MAX_EXCEL_ROWS" in response.json()["detail"]


# ------------------------------------------------------------------------------ DuckDB
def test_duckdb_connections_are_locked_down(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    parquet = data / "d.parquet"
    con = duckdb.connect()
    con.execute(f"COPY (SELECT range AS n FROM range(100)) TO '{parquet}' (FORMAT parquet)")
    con.close()
    outside = tmp_path / "outside.csv"
    outside.write_text("secret\n1\n")
    work = tmp_path / "work"
    source = {"source": "upload", "format": "parquet", "path": str(parquet)}
    with open_dataset(source, temp_dir=work / "duckdb") as ds:
        assert ds.row_count() == 100
        ds.materialize(work / "data.parquet")  # beside temp_dir: allowed
        assert ds.row_count() == 100
        for sql in (
            f"SELECT * FROM read_csv('{outside}')",
            "SELECT * FROM read_csv('/etc/passwd')",
            f"COPY (SELECT 1) TO '{tmp_path / 'x.csv'}'",
            "SELECT * FROM read_parquet('https://example.com/a.parquet')",
            "INSTALL httpfs",
            "LOAD httpfs",
            "SET enable_external_access = true",
            f"SET allowed_directories = ['{tmp_path}/']",
        ):
            with pytest.raises(duckdb.Error):
                ds.query(sql)
        settings = dict(
            ds.query(
                "SELECT name, value FROM duckdb_settings() WHERE name IN "
                "('autoload_known_extensions', 'autoinstall_known_extensions', "
                "'enable_external_access')"
            )
        )
        assert set(settings.values()) == {"false"}
    with open_dataset({"source": "demo", "name": "sales", "rows": 10, "seed": 1}) as ds:
        assert ds.row_count() == 10
        with pytest.raises(duckdb.Error):
            ds.query(f"SELECT * FROM read_parquet('{parquet}')")
