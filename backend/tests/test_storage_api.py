"""End to end through the API (embedded mode, real worker processes) with
`STORAGE_URL=s3://...` on a real moto_server: nothing the jobs read or write touches the
API's disk, the job params carry keys, downloads stream from the bucket, and cleanup and
deletes remove the objects. Skips without moto_server, except with CI=true.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from PIL import Image

from app.core.config import set_settings
from app.db.session import session_scope
from app.jobs.cleanup import cleanup_old_jobs
from app.jobs.models import ReportJob
from tests.conftest import Service, running_service
from tests.s3 import MotoServer

CSV = "day,shop,amount\n" + "".join(
    f"2025-01-{1 + i % 28:02d},shop-{i % 4},{i * 1.5}\n" for i in range(400)
)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, MotoServer, str]]:
    server = MotoServer()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.env.items():
            patch.setenv(name, value)  # inherited by the embedded worker processes
        bucket = server.new_bucket()
        var_dir = tmp_path_factory.mktemp("svc-s3")
        try:
            with running_service("sqlite", var_dir, STORAGE_URL=f"s3://{bucket}/svc") as svc:
                yield svc, server, bucket
        finally:
            server.stop()


def _keys(server: MotoServer, bucket: str, prefix: str = "svc/") -> list[str]:
    listed = server.client().list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def _params(job_id: str) -> dict[str, Any]:
    with session_scope() as session:
        job = session.get(ReportJob, job_id)
        assert job is not None
        return dict(job.params)


def test_reports_and_documents_live_in_the_bucket(s3: tuple[Service, MotoServer, str]) -> None:
    service, server, bucket = s3
    set_settings(service.settings)
    api, auth = service.client, service.headers(service.token())

    uploaded = api.post("/datasets", files={"file": ("sales.csv", CSV.encode())}, headers=auth)
    assert uploaded.status_code == 201, uploaded.text
    dataset_id = uploaded.json()["dataset_id"]
    dataset_key = f"svc/datasets/{dataset_id[:2]}/{dataset_id}.parquet"
    assert dataset_key in _keys(server, bucket)
    assert not (service.settings.storage_root / "datasets").exists()  # not on the API's disk

    body = {
        "report_type": "excel",
        "group_by": ["shop"],
        "dataset": {"source": "upload", "dataset_id": dataset_id},
    }
    accepted = api.post("/reports/heavy", json=body, headers=auth)
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["job_id"]
    params = _params(job_id)
    assert params["dataset_key"] == dataset_key.removeprefix("svc/")
    assert "dataset_path" not in params  # a key, never a host path
    job = service.wait(job_id, auth, timeout=120)
    assert job["status"] == "completed", job
    stored = [k for k in _keys(server, bucket) if k.startswith(f"svc/artifacts/{job_id}/")]
    assert len(stored) == 1 and stored[0].endswith(".xlsx")

    response = api.get(f"/reports/jobs/{job_id}/download", headers=auth)
    assert response.status_code == 200
    with session_scope() as session:
        row = session.get(ReportJob, job_id)
        assert row is not None
        size, key = row.artifact_size, row.artifact_path
    assert key == stored[0].removeprefix("svc/")  # the row holds the key
    assert int(response.headers["content-length"]) == len(response.content) == size
    assert "attachment" in response.headers["content-disposition"]
    wb = openpyxl.load_workbook(io.BytesIO(response.content), read_only=True)
    assert wb.sheetnames == ["Summary", "By shop", "Data"]
    rows = list(wb["Data"].iter_rows(values_only=True))
    assert rows[0] == ("day", "shop", "amount") and len(rows) == 401

    image = io.BytesIO()
    Image.new("RGB", (600, 300), "white").save(image, format="PNG")
    document = api.post(
        "/documents", headers=auth, files={"file": ("page.png", image.getvalue(), "image/png")}
    )
    assert document.status_code == 201, document.text
    document_id = document.json()["document"]["document_id"]
    thumbs = api.post(f"/documents/{document_id}/thumbnails", headers=auth)
    assert thumbs.status_code == 202, thumbs.text
    thumbs_id = thumbs.json()["job_id"]
    assert _params(thumbs_id)["document_key"] == f"documents/{document_id[:2]}/{document_id}.png"
    finished = service.wait(thumbs_id, auth, timeout=60)
    assert finished["status"] == "completed", finished
    archive = api.get(f"/reports/jobs/{thumbs_id}/download", headers=auth)
    assert archive.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert len(names) == len(finished["result"]["thumbnails"]) > 0

    scratch = service.settings.scratch_dir
    assert not [p for p in scratch.glob("*") if p.name.startswith((job_id, thumbs_id))]

    # Deleting the uploads removes their objects (after the commit).
    assert api.delete(f"/datasets/{dataset_id}", headers=auth).status_code == 204
    assert api.delete(f"/documents/{document_id}", headers=auth).status_code == 204
    left = _keys(server, bucket)
    assert dataset_key not in left and not [k for k in left if "/documents/" in k]

    # Retention removes the jobs' objects, then their rows; a second run finds nothing.
    service.settings.JOB_RETENTION_DAYS = 0
    try:
        assert cleanup_old_jobs()["removed"] >= 2
    finally:
        service.settings.JOB_RETENTION_DAYS = 7.0
    assert _keys(server, bucket, "svc/artifacts/") == []
    assert api.get(f"/reports/jobs/{job_id}", headers=auth).status_code == 404
    assert cleanup_old_jobs()["removed"] == 0


def test_a_removed_object_is_gone_not_a_broken_download(
    s3: tuple[Service, MotoServer, str],
) -> None:
    service, server, bucket = s3
    set_settings(service.settings)
    api, auth = service.client, service.headers(service.token())
    job_id = api.post("/reports/dummy", headers=auth).json()["job_id"]
    assert service.wait(job_id, auth)["status"] == "completed"
    (key,) = _keys(server, bucket, f"svc/artifacts/{job_id}/")
    server.client().delete_object(Bucket=bucket, Key=key)
    assert api.get(f"/reports/jobs/{job_id}/download", headers=auth).status_code == 410


def test_storage_readiness_asks_the_bucket(s3: tuple[Service, MotoServer, str]) -> None:
    service, _, _ = s3
    ready = service.client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["storage"]["ok"] is True


def test_local_storage_root_is_unused(s3: tuple[Service, MotoServer, str]) -> None:
    service, _, _ = s3
    root: Path = service.settings.storage_root
    assert not (root / "artifacts").exists() and not (root / "documents").exists()
