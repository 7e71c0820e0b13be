"""What a person recognises a job by (listing and job JSON), date filters, an admin's listing
of everyone's jobs, rerun, and `/docs` + `/redoc` from local assets. Embedded mode, SQLite and
PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from app.jobs.models import ReportJob
from app.jobs.schemas import JobRead
from tests.conftest import Service


def test_job_json_names_title_type_dataset_rows_and_size() -> None:
    heavy = ReportJob(
        id="j1",
        owner_id=1,
        job_type="pdf",
        queue="reports",
        status="completed",
        attempts=1,
        created_at=datetime.now(UTC),
        params={
            "report_type": "pdf",
            "title": "Q3 sales",
            "dataset": {"source": "upload", "dataset_id": "d1"},
            "dataset_name": "sales.csv",
            "dataset_rows": 1234,
        },
        artifact_size=4096,
        progress_percent=100.0,
        progress_message="Done",
        version=7,
    )
    body = JobRead.model_validate(heavy).model_dump(mode="json")
    assert body["title"] == "Q3 sales" and body["report_type"] == "pdf"
    assert body["dataset_name"] == "sales.csv" and body["row_count"] == 1234
    assert body["result_bytes"] == 4096
    heavy.params = {"dataset": {"source": "demo", "name": "sales", "rows": 500}}
    demo = JobRead.model_validate(heavy)
    assert (demo.dataset_name, demo.row_count, demo.title) == ("demo:sales", 500, None)


def _submit(service: Service, headers: dict[str, str], **body: object) -> str:
    response = service.client.post("/reports/dummy", json=body, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def test_listing_fields_owner_and_date_filters(service: Service) -> None:
    token = service.token()
    auth = service.headers(token)
    job_id = _submit(service, auth)
    done = service.wait(job_id, auth)
    assert done["result_bytes"] and done["result_bytes"] > 0
    assert done["owner"] and done["version"] >= 3  # born queued, started, completed

    listing = service.client.get("/reports/jobs", headers=auth).json()
    assert listing["total"] == 1
    item = listing["items"][0]
    assert item["owner"] == done["owner"] and item["result_bytes"] == done["result_bytes"]
    for key in ("title", "report_type", "dataset_name", "row_count"):
        assert key in item

    created = datetime.fromisoformat(item["created_at"])
    around = {
        "created_after": (created - timedelta(minutes=1)).isoformat(),
        "created_before": (created + timedelta(minutes=1)).isoformat(),
    }
    assert service.client.get("/reports/jobs", params=around, headers=auth).json()["total"] == 1
    later = {"created_after": (created + timedelta(seconds=1)).isoformat()}
    assert service.client.get("/reports/jobs", params=later, headers=auth).json()["total"] == 0
    earlier = {"created_before": (created - timedelta(seconds=1)).isoformat()}
    assert service.client.get("/reports/jobs", params=earlier, headers=auth).json()["total"] == 0
    naive = {"created_after": (created - timedelta(minutes=1)).replace(tzinfo=None).isoformat()}
    assert service.client.get("/reports/jobs", params=naive, headers=auth).json()["total"] == 1
    bad = service.client.get("/reports/jobs", params={"created_after": "soon"}, headers=auth)
    assert bad.status_code == 422


def test_admin_lists_everyones_jobs_with_the_owner(service: Service) -> None:
    alice, bob = service.headers(service.token()), service.headers(service.token())
    ids = {_submit(service, alice), _submit(service, bob)}
    admin = service.headers(service.token(admin=True))
    listing = service.client.get("/reports/jobs", params={"limit": 200}, headers=admin).json()
    assert listing["total"] >= 2
    owners = {item["job_id"]: item["owner"] for item in listing["items"]}
    assert ids <= set(owners) and len({owners[i] for i in ids}) == 2
    own = service.client.get("/reports/jobs", headers=alice).json()
    assert own["total"] == 1


def test_rerun_copies_the_parameters_under_quotas(service: Service) -> None:
    auth, other = service.headers(service.token()), service.headers(service.token())
    first = _submit(service, auth, delay_seconds=0.2)
    service.wait(first, auth)
    response = service.client.post(f"/reports/jobs/{first}/rerun", headers=auth)
    assert response.status_code == 202, response.text
    again = response.json()["job_id"]
    assert again != first
    done = service.wait(again, auth)
    assert done["status"] == "completed" and done["result"]["slept_seconds"] == 0.2

    assert service.client.post(f"/reports/jobs/{first}/rerun", headers=other).status_code == 404
    admin = service.headers(service.token(admin=True))
    assert service.client.post(f"/reports/jobs/{first}/rerun", headers=admin).status_code == 404
    missing = service.client.post("/reports/jobs/nope/rerun", headers=auth)
    assert missing.status_code == 404


def test_docs_and_redoc_use_only_local_assets(service: Service) -> None:
    for page in ("/docs", "/redoc"):
        response = service.client.get(page)
        assert response.status_code == 200
        urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", response.text)
        urls += re.findall(r"""url: ?'([^']+)'""", response.text)
        assert urls, response.text
        for url in urls:
            assert url.startswith("/"), f"{page} references {url}"
            asset = service.client.get(url)
            assert asset.status_code == 200, url
            assert asset.content
        assert "http://" not in response.text and "https://" not in response.text
