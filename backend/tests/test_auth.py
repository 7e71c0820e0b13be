"""Authentication and ownership: other users' jobs look exactly like missing ones."""

from __future__ import annotations

import pytest

from tests.conftest import Service


@pytest.fixture
def finished_job(service: Service, auth: dict[str, str]) -> str:
    job_id = service.client.post("/reports/dummy", headers=auth).json()["job_id"]
    service.wait(job_id, auth)
    return job_id


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/reports/jobs/{id}"),
        ("get", "/reports/jobs/{id}/download"),
        ("post", "/reports/jobs/{id}/cancel"),
    ],
)
def test_other_user_gets_404(
    service: Service, finished_job: str, other_auth: dict[str, str], method: str, path: str
) -> None:
    url = path.format(id=finished_job)
    theirs = service.client.request(method, url, headers=other_auth)
    missing = service.client.request(
        method, path.format(id="00000000-0000-4000-8000-000000000000"), headers=other_auth
    )
    assert theirs.status_code == missing.status_code == 404
    assert theirs.json() == missing.json()


def test_other_user_does_not_see_job_in_list(
    service: Service, finished_job: str, other_auth: dict[str, str]
) -> None:
    listed = service.client.get("/reports/jobs", headers=other_auth).json()
    assert finished_job not in {item["job_id"] for item in listed["items"]}


def test_admin_sees_every_job(service: Service, finished_job: str) -> None:
    admin = service.headers(service.token(admin=True))
    assert service.client.get(f"/reports/jobs/{finished_job}", headers=admin).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic dXNlcjpwdw=="}],
    ids=["missing", "unknown-token", "wrong-scheme"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/reports/dummy"),
        ("get", "/reports/jobs"),
        ("get", "/reports/jobs/00000000-0000-4000-8000-000000000000"),
    ],
)
def test_requests_without_a_valid_token_get_401(
    service: Service, headers: dict[str, str], method: str, path: str
) -> None:
    response = service.client.request(method, path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert "reportctl token create" in response.json()["detail"]
