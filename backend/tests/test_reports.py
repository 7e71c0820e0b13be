"""The job lifecycle over HTTP in embedded mode, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from tests.conftest import Service


def test_dummy_job_lifecycle(service: Service, auth: dict[str, str]) -> None:
    response = service.client.post("/reports/dummy", json={"delay_seconds": 0.3}, headers=auth)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert set(accepted) == {"job_id", "status", "backend", "queue", "status_url"}
    assert uuid.UUID(accepted["job_id"]).version == 4
    assert accepted["status"] == "queued"
    assert accepted["backend"] == "local"
    assert accepted["queue"] == "reports"
    assert accepted["status_url"] == f"/reports/jobs/{accepted['job_id']}"

    job = service.wait(accepted["job_id"], auth)
    assert job["status"] == "completed", job
    assert job["job_type"] == "dummy"
    assert job["attempts"] == 1
    assert job["progress"] == {"percent": 100.0, "message": "done"}
    assert job["error"] is None
    assert job["result"]["message"] == "dummy report ready"
    stamps = [
        datetime.fromisoformat(job[k])
        for k in ("created_at", "queued_at", "started_at", "finished_at")
    ]
    assert stamps == sorted(stamps)
    assert job["download_url"].startswith(f"/reports/jobs/{job['job_id']}/download?expires=")

    download = service.client.get(job["download_url"], headers=auth)
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/json"
    assert 'filename="dummy-report.json"' in download.headers["content-disposition"]
    assert json.loads(download.content)["attempt"] == 1


def test_empty_body_is_accepted(service: Service, auth: dict[str, str]) -> None:
    response = service.client.post("/reports/dummy", headers=auth)
    assert response.status_code == 202, response.text
    assert service.wait(response.json()["job_id"], auth)["status"] == "completed"


def test_progress_is_visible_while_running(service: Service, auth: dict[str, str]) -> None:
    job_id = service.client.post("/reports/dummy", json={"delay_seconds": 3}, headers=auth).json()[
        "job_id"
    ]
    running = service.wait(job_id, auth, statuses={"started"})
    seen = set()
    while running["status"] == "started":
        seen.add(running["progress"]["percent"])
        running = service.client.get(f"/reports/jobs/{job_id}", headers=auth).json()
    assert running["status"] == "completed"
    assert any(0 < p < 100 for p in seen), seen


def test_transient_failures_are_retried_with_attempts_counted(
    service: Service, auth: dict[str, str]
) -> None:
    job_id = service.client.post("/reports/dummy", json={"fail_times": 2}, headers=auth).json()[
        "job_id"
    ]
    job = service.wait(job_id, auth)
    assert job["status"] == "completed", job
    assert job["attempts"] == 3
    assert job["result"]["attempt"] == 3


def test_retries_are_capped(service: Service, auth: dict[str, str]) -> None:
    job_id = service.client.post("/reports/dummy", json={"fail_times": 5}, headers=auth).json()[
        "job_id"
    ]
    job = service.wait(job_id, auth)
    assert job["status"] == "failed"
    assert job["attempts"] == service.settings.max_attempts == 4
    assert "gave up after 4 attempts" in job["error"]
    assert "simulated transient failure" in job["error"]
    assert job["download_url"] is None


def test_cancel_running_job_stops_it(service: Service, auth: dict[str, str]) -> None:
    job_id = service.client.post("/reports/dummy", json={"delay_seconds": 30}, headers=auth).json()[
        "job_id"
    ]
    service.wait(job_id, auth, statuses={"started"})
    response = service.client.post(f"/reports/jobs/{job_id}/cancel", headers=auth)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    # The worker notices within a progress tick and is free again for the next job.
    follow_up = service.client.post("/reports/dummy", headers=auth).json()["job_id"]
    follow_up_2 = service.client.post("/reports/dummy", headers=auth).json()["job_id"]
    assert service.wait(follow_up, auth, timeout=10)["status"] == "completed"
    assert service.wait(follow_up_2, auth, timeout=10)["status"] == "completed"
    final = service.client.get(f"/reports/jobs/{job_id}", headers=auth).json()
    assert final["status"] == "cancelled"
    assert final["download_url"] is None


def test_cancel_finished_job_is_a_conflict(service: Service, auth: dict[str, str]) -> None:
    job_id = service.client.post("/reports/dummy", headers=auth).json()["job_id"]
    service.wait(job_id, auth)
    response = service.client.post(f"/reports/jobs/{job_id}/cancel", headers=auth)
    assert response.status_code == 409
    assert "already completed" in response.json()["detail"]


def test_list_newest_first_paginated_and_filtered(service: Service) -> None:
    headers = service.headers(service.token())
    ids = [
        service.client.post(
            "/reports/dummy", json={"fail_times": 5 if i == 1 else 0}, headers=headers
        ).json()["job_id"]
        for i in range(4)
    ]
    for job_id in ids:
        service.wait(job_id, headers)
    page = service.client.get("/reports/jobs?limit=3", headers=headers).json()
    assert page["total"] == 4
    assert [item["job_id"] for item in page["items"]] == ids[::-1][:3]
    rest = service.client.get("/reports/jobs?limit=3&offset=3", headers=headers).json()
    assert [item["job_id"] for item in rest["items"]] == [ids[0]]
    failed = service.client.get("/reports/jobs?status=failed", headers=headers).json()
    assert [item["job_id"] for item in failed["items"]] == [ids[1]]
    by_type = service.client.get("/reports/jobs?job_type=pdf", headers=headers).json()
    assert by_type["total"] == 0


def test_health_live_needs_no_token(service: Service) -> None:
    response = service.client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_notify_email_queues_a_notice_or_asks_for_an_address(service: Service) -> None:
    body = {
        "report_type": "analysis",
        "dataset": {"source": "demo", "name": "sales", "rows": 200, "seed": 1},
        "title": "Weekly",
        "notify": "email",
    }
    nobody = service.headers(service.token())
    refused = service.client.post("/reports/heavy", json=body, headers=nobody)
    assert refused.status_code == 422
    assert "reportctl token create NAME --email" in refused.json()["detail"]

    owner = service.headers(service.token(email="owner@example.com"))
    accepted = service.client.post("/reports/heavy", json=body, headers=owner)
    assert accepted.status_code == 202, accepted.text
    assert service.wait(accepted.json()["job_id"], owner)["status"] == "completed"
    notices = service.client.get("/reports/jobs", params={"job_type": "email"}, headers=owner)
    (notice,) = notices.json()["items"]
    assert notice["status"] in ("queued", "started", "retrying", "completed", "failed")
