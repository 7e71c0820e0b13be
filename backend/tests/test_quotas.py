"""Per-user quotas over HTTP: 429 with Retry-After and a message naming the limit, and the
other users unaffected. The fair shares between users are tests/test_fairness.py."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from datetime import datetime

import pytest

from app.core.config import set_settings
from app.quotas import stored_bytes
from tests.conftest import Service, running_service


def _dummy(service: Service, headers: dict[str, str], **body: object) -> int:
    return service.client.post("/reports/dummy", json=body, headers=headers).status_code


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(
        "sqlite",
        tmp_path_factory.mktemp("quotas"),
        QUOTA_SUBMISSIONS_PER_MINUTE=5,
        QUOTA_QUEUED_JOBS=3,
        QUOTA_ACTIVE_JOBS=1,
        QUOTA_STORED_BYTES=1500,
    ) as service:
        yield service


@pytest.fixture(autouse=True)
def _settings(limited: Service) -> None:
    set_settings(limited.settings)
    stored_bytes.forget()


def test_submissions_per_minute(limited: Service) -> None:
    headers = limited.headers(limited.token())
    # Unfinished jobs count too (QUOTA_QUEUED_JOBS=3): let each one end before the next.
    for _ in range(5):
        response = limited.client.post("/reports/dummy", headers=headers)
        assert response.status_code == 202, response.text
        limited.wait(response.json()["job_id"], headers)
    refused = limited.client.post("/reports/dummy", headers=headers)
    assert refused.status_code == 429
    assert "QUOTA_SUBMISSIONS_PER_MINUTE" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    other = limited.headers(limited.token())
    assert _dummy(limited, other) == 202


def test_unfinished_jobs(limited: Service) -> None:
    headers = limited.headers(limited.token())
    ids = []
    for _ in range(3):
        response = limited.client.post(
            "/reports/dummy", json={"delay_seconds": 30}, headers=headers
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["job_id"])
    refused = limited.client.post("/reports/dummy", headers=headers)
    assert refused.status_code == 429
    assert "QUOTA_QUEUED_JOBS" in refused.json()["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert _dummy(limited, limited.headers(limited.token())) == 202  # others unaffected
    for job_id in ids:  # cancelling frees the quota at once
        cancelled = limited.client.post(f"/reports/jobs/{job_id}/cancel", headers=headers)
        assert cancelled.status_code == 200, cancelled.text
    assert _dummy(limited, headers) == 202


def test_a_user_over_the_active_cap_waits_without_being_refused(limited: Service) -> None:
    """QUOTA_ACTIVE_JOBS=1: the second and third jobs wait `pending`, saying why, and run one
    after the other."""
    headers = limited.headers(limited.token())
    ids = []
    for _ in range(3):
        response = limited.client.post(
            "/reports/dummy", json={"delay_seconds": 0.4}, headers=headers
        )
        assert response.status_code == 202, response.text
        ids.append(response.json()["job_id"])
    waiting = limited.client.get(f"/reports/jobs/{ids[2]}", headers=headers).json()
    assert waiting["status"] == "pending"
    assert "QUOTA_ACTIVE_JOBS" in waiting["progress"]["message"]
    jobs = [limited.wait(job_id, headers) for job_id in ids]
    assert [job["status"] for job in jobs] == ["completed"] * 3
    spans = sorted(
        (datetime.fromisoformat(j["started_at"]), datetime.fromisoformat(j["finished_at"]))
        for j in jobs
    )
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, "two of one user's jobs ran at once over QUOTA_ACTIVE_JOBS=1"


def _upload(service: Service, headers: dict[str, str], size: int) -> int:
    rows = "".join(f"{i},{i * 2}\n" for i in range(size // 8))
    body = ("a,b\n" + rows).encode()
    files = {"file": ("data.csv", io.BytesIO(body), "text/csv")}
    return service.client.post("/datasets", files=files, headers=headers).status_code


def test_stored_bytes(limited: Service) -> None:
    headers = limited.headers(limited.token())
    assert _upload(limited, headers, 2000) == 201  # under the limit before it: accepted
    refused = limited.client.post(
        "/datasets",
        files={"file": ("more.csv", io.BytesIO(b"a,b\n1,2\n"), "text/csv")},
        headers=headers,
    )
    assert refused.status_code == 429
    assert "QUOTA_STORED_BYTES" in refused.json()["detail"]
    assert int(refused.headers["Retry-After"]) >= 60
    heavy = limited.client.post(
        "/reports/heavy",
        json={"report_type": "excel", "dataset": {"source": "demo", "rows": 10}},
        headers=headers,
    )
    assert heavy.status_code == 429, heavy.text
    assert _upload(limited, limited.headers(limited.token()), 100) == 201  # others unaffected

    dataset_id = limited.client.get("/datasets", headers=headers).json()["items"][0]["dataset_id"]
    deleted = limited.client.delete(f"/datasets/{dataset_id}", headers=headers)
    assert deleted.status_code == 204
    assert _upload(limited, headers, 100) == 201  # deleting frees the space at once
