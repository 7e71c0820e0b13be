"""Bad input gets a 4xx that says what is wrong, never a 500."""

from __future__ import annotations

import pytest

from tests.conftest import Service

UNKNOWN_JOB = "/reports/jobs/00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"delay_seconds": 1, "colour": "red"}, 422, "colour: unknown field"),
        ({"delay_seconds": "soon"}, 422, "delay_seconds: Input should be a valid number"),
        ({"delay_seconds": 61}, 422, "delay_seconds: Input should be less than or equal to 60"),
        ({"delay_seconds": -1}, 422, "delay_seconds: Input should be greater than or equal"),
        ({"fail_times": 6}, 422, "fail_times: Input should be less than or equal to 5"),
        ({"fail_times": 1.5}, 422, "fail_times: Input should be a valid integer"),
        ([1, 2], 422, "Input should be a valid dictionary"),
    ],
)
def test_bad_dummy_bodies(
    service: Service, auth: dict[str, str], body: object, status: int, says: str
) -> None:
    response = service.client.post("/reports/dummy", json=body, headers=auth)
    assert response.status_code == status, response.text
    assert says in response.json()["detail"]


def test_malformed_json(service: Service, auth: dict[str, str]) -> None:
    response = service.client.post(
        "/reports/dummy",
        content=b'{"delay_seconds": 1,',
        headers={**auth, "content-type": "application/json"},
    )
    assert response.status_code == 422
    assert "malformed JSON" in response.json()["detail"]


def test_oversized_body(service: Service, auth: dict[str, str]) -> None:
    big = b'{"delay_seconds": 1, "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = service.client.post(
        "/reports/dummy", content=big, headers={**auth, "content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]


def test_oversized_body_without_content_length(service: Service, auth: dict[str, str]) -> None:
    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(40):
            yield b"x" * 65536

    response = service.client.post(
        "/reports/dummy", content=chunks(), headers={**auth, "content-type": "application/json"}
    )
    assert response.status_code == 413


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("get", UNKNOWN_JOB, 404),
        ("get", UNKNOWN_JOB + "/download", 404),
        ("post", UNKNOWN_JOB + "/cancel", 404),
        ("get", "/reports/jobs/not-a-uuid", 404),
        ("get", "/reports/jobs?status=lost", 422),
        ("get", "/reports/jobs?limit=0", 422),
        ("get", "/reports/jobs?limit=1000", 422),
        ("get", "/reports/jobs?offset=-1", 422),
    ],
)
def test_bad_job_requests(
    service: Service, auth: dict[str, str], method: str, path: str, status: int
) -> None:
    response = service.client.request(method, path, headers=auth)
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_download_of_unfinished_job_is_a_conflict(service: Service, auth: dict[str, str]) -> None:
    job_id = service.client.post("/reports/dummy", json={"delay_seconds": 5}, headers=auth).json()[
        "job_id"
    ]
    response = service.client.get(f"/reports/jobs/{job_id}/download", headers=auth)
    assert response.status_code == 409
    assert "no file to download" in response.json()["detail"]
    service.client.post(f"/reports/jobs/{job_id}/cancel", headers=auth)


@pytest.mark.parametrize("route", ["/reports/jobs", "/datasets", "/documents"])
def test_an_offset_past_what_sql_holds_is_a_422(
    route: str, service: Service, auth: dict[str, str]
) -> None:
    response = service.client.get(route, params={"offset": 9223372036854775808}, headers=auth)
    assert response.status_code == 422, response.text
    assert "offset" in response.json()["detail"]
