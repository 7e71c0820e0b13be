"""Signed download links: open without a token; a tampered or expired one gets 403, never
the file."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from app.core.config import Settings
from app.jobs import links
from tests.conftest import Service


def _completed(service: Service, auth: dict[str, str]) -> dict[str, object]:
    response = service.client.post("/reports/dummy", json={}, headers=auth)
    assert response.status_code == 202, response.text
    job = service.wait(response.json()["job_id"], auth)
    assert job["status"] == "completed", job
    return job


def _query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_the_job_link_opens_without_a_token(service: Service, auth: dict[str, str]) -> None:
    job = _completed(service, auth)
    response = service.client.get(str(job["download_url"]))
    assert response.status_code == 200, response.text
    assert 'filename="dummy-report.json"' in response.headers["content-disposition"]


def test_a_tampered_link_is_refused(service: Service, auth: dict[str, str]) -> None:
    job = _completed(service, auth)
    query = _query(str(job["download_url"]))
    path = f"/reports/jobs/{job['job_id']}/download"
    forged = "0" * 64 if query["signature"] != "0" * 64 else "1" * 64
    later = int(query["expires"]) + 3600
    for params in (
        {"expires": query["expires"], "signature": forged},
        {"expires": str(later), "signature": query["signature"]},  # a later expiry
    ):
        response = service.client.get(path, params=params)
        assert response.status_code == 403, response.text
        assert "not valid" in response.json()["detail"]
        assert "dummy report ready" not in response.text


def test_a_link_does_not_open_another_job(service: Service, auth: dict[str, str]) -> None:
    first, second = _completed(service, auth), _completed(service, auth)
    query = _query(str(first["download_url"]))
    response = service.client.get(f"/reports/jobs/{second['job_id']}/download", params=query)
    assert response.status_code == 403


def test_an_expired_link_is_refused(service: Service, auth: dict[str, str]) -> None:
    job = _completed(service, auth)
    stale = links.download_path(
        service.settings,
        str(job["job_id"]),
        _owner_id(service, str(job["job_id"])),
        now=time.time() - service.settings.DOWNLOAD_LINK_TTL_SECONDS - 7200,
    )
    response = service.client.get(stale)
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]


def test_without_token_or_signature_it_is_401(service: Service, auth: dict[str, str]) -> None:
    job = _completed(service, auth)
    response = service.client.get(f"/reports/jobs/{job['job_id']}/download")
    assert response.status_code == 401


def _owner_id(service: Service, job_id: str) -> int:
    from app.db.session import session_scope
    from app.jobs.models import ReportJob

    with session_scope() as session:
        row = session.get(ReportJob, job_id)
        assert row is not None
        return row.owner_id


@pytest.mark.parametrize("env", ["prod"])
def test_prod_requires_a_secret_key(env: str) -> None:
    with pytest.raises(ValueError, match="SECRET_KEY must be set in prod"):
        Settings(ENVIRONMENT=env, SECRET_KEY="")  # type: ignore[call-arg]
    assert Settings(ENVIRONMENT=env, SECRET_KEY="k" * 40).link_key == b"k" * 40  # type: ignore[call-arg]


def test_the_signature_covers_job_owner_and_expiry() -> None:
    settings = Settings(ENVIRONMENT="test", SECRET_KEY="s" * 40)  # type: ignore[call-arg]
    base = links.signature(settings, "job", 1, 100)
    assert base != links.signature(settings, "job2", 1, 100)
    assert base != links.signature(settings, "job", 2, 100)
    assert base != links.signature(settings, "job", 1, 101)
    other_key = Settings(ENVIRONMENT="test", SECRET_KEY="t" * 40)  # type: ignore[call-arg]
    assert base != links.signature(other_key, "job", 1, 100)
    links.verify(settings, job_id="job", owner_id=1, expires=100, given=base, now=99)
    with pytest.raises(links.LinkRefused, match="expired"):
        links.verify(settings, job_id="job", owner_id=1, expires=100, given=base, now=101)
