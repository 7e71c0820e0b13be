"""The console's rules over HTTP (the browser tests drive its pages): the session cookie, CSRF
and origin checks, ownership as on the API (404 for others), forms refused with a message,
schedules edited, and the admin's views."""

from __future__ import annotations

import html
import re
import uuid
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.conftest import Service

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


class Browser:
    """A TestClient with its own cookie jar, signed in to the console with `token`."""

    def __init__(self, service: Service, token: str) -> None:
        self.client = TestClient(service.client.app)
        response = self.client.post(
            "/ui/login", data={"token": token, "next": "/ui/jobs"}, follow_redirects=False
        )
        assert response.status_code == 303, response.text
        self.set_cookie = response.headers["set-cookie"]
        page = self.client.get("/ui/jobs")
        match = CSRF.search(page.text)
        assert match, page.text
        self.csrf = match.group(1)

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        return self.client.post(
            path, data={"csrf_token": self.csrf, **(data or {})}, follow_redirects=False, **kw
        )


@pytest.fixture
def me(service: Service) -> Browser:
    return Browser(service, service.token())


def _dummy(service: Service, token: str, **body: Any) -> str:
    response = service.client.post("/reports/dummy", json=body, headers=service.headers(token))
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def test_sign_in_sets_a_strict_http_only_cookie_scoped_to_the_console(me: Browser) -> None:
    cookie = me.set_cookie.lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
    page = me.client.get("/ui/jobs")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    # The API's own routes never take the cookie: a cross-site request gets nothing there.
    assert me.client.get("/reports/jobs").status_code == 401


def test_without_a_session_pages_send_to_sign_in(service: Service, api: TestClient) -> None:
    fresh = TestClient(service.client.app)
    response = fresh.get("/ui/jobs?status=failed", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/ui/login?next=/ui/jobs%3Fstatus%3Dfailed"
    assert fresh.get("/ui/events").status_code == 401
    bad = fresh.post("/ui/login", data={"token": "rjs_wrong"})
    assert bad.status_code == 401 and "Invalid or revoked token" in bad.text


def test_sign_in_never_redirects_off_the_console(service: Service) -> None:
    fresh = TestClient(service.client.app)
    for target in ("https://evil.example/", "//evil.example/ui/", "/reports/jobs"):
        response = fresh.post(
            "/ui/login", data={"token": service.token(), "next": target}, follow_redirects=False
        )
        assert response.headers["location"] == "/ui/jobs", target


def test_posts_need_the_csrf_token_and_the_same_origin(service: Service, me: Browser) -> None:
    job_id = _dummy(service, service.token(), delay_seconds=30)
    mine = _dummy(service, me_token(service, me), delay_seconds=30)
    no_token = me.client.post(f"/ui/jobs/{mine}/cancel", follow_redirects=False)
    assert no_token.status_code == 403 and "CSRF" in no_token.text
    stale = me.client.post(
        f"/ui/jobs/{mine}/cancel", data={"csrf_token": "0" * 64}, follow_redirects=False
    )
    assert stale.status_code == 403
    foreign = me.post(f"/ui/jobs/{mine}/cancel", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and "evil.example" in foreign.text
    assert me.post(f"/ui/jobs/{mine}/cancel").status_code == 303
    # Someone else's job is a 404 page, as on the API.
    assert me.client.get(f"/ui/jobs/{job_id}").status_code == 404
    assert me.post(f"/ui/jobs/{job_id}/cancel").status_code == 404
    assert me.client.get(f"/ui/jobs/{job_id}/events").status_code == 404


def me_token(service: Service, me: Browser) -> str:
    """The token `me` signed in with, from its cookie."""
    value = me.client.cookies.get("report_console")
    assert value
    return str(value)


def test_a_revoked_token_ends_the_session(service: Service) -> None:
    from app.db.session import session_scope
    from app.users.store import create_token, list_tokens, revoke_token
    from app.users.token_cache import forget_all

    name = f"revoked-{uuid.uuid4().hex[:8]}"
    with session_scope() as session:
        token = create_token(session=session, name=name)
    browser = Browser(service, token)
    with session_scope() as session:
        (info,) = list_tokens(session=session, user=name)
        assert revoke_token(session=session, token_id=info.id)
    forget_all()  # this process's cache; others see the revocation within AUTH_CACHE_SECONDS
    response = browser.client.get("/ui/jobs", follow_redirects=False)
    assert response.status_code == 303 and "reason=Invalid" in response.headers["location"]


def test_report_form_refusals_name_the_field(me: Browser) -> None:
    bad_rows = me.post("/ui/reports", {"report_type": "pdf", "dataset": "demo:sales", "rows": "x"})
    assert bad_rows.status_code == 422 and "rows: expected a whole number" in bad_rows.text
    too_many = me.post(
        "/ui/reports", {"report_type": "pdf", "dataset": "demo:sales", "rows": "999999999"}
    )
    assert too_many.status_code == 422 and "dataset.demo.rows" in too_many.text
    unknown = me.post(
        "/ui/reports",
        {"report_type": "excel", "dataset": "demo:sales", "measures": ["nope"]},
    )
    assert unknown.status_code == 422 and "nope" in unknown.text
    missing = me.post("/ui/reports", {"report_type": "pdf", "dataset": "upload:abc"})
    assert missing.status_code == 404 and "abc" in missing.text
    assert me.client.get("/ui/datasets/columns?dataset=upload:abc").status_code == 404


def test_report_form_submits_a_job_and_uploads(service: Service, me: Browser) -> None:
    csv = b"day,site,visitors\n2025-01-01,a,10\n2025-01-02,b,12\n"
    uploaded = me.post("/ui/datasets", {"name": "visits"}, files={"file": ("v.csv", csv)})
    assert uploaded.status_code == 303
    ref = uploaded.headers["location"].split("dataset=")[1]
    columns = me.client.get(f"/ui/datasets/columns?dataset={ref}").json()
    assert columns["measures"] == ["visitors"] and columns["date_column"] == "day"
    form = me.client.get(f"/ui/reports/new?dataset={ref}")
    assert '<option value="visitors" selected>' in form.text
    submitted = me.post(
        "/ui/reports",
        {"report_type": "excel", "dataset": ref, "title": "Visits", "measures": ["visitors"]},
    )
    assert submitted.status_code == 303, submitted.text
    job_id = submitted.headers["location"].rsplit("/", 1)[1]
    job = service.wait(job_id, service.headers(me_token(service, me)))
    assert job["status"] == "completed" and job["title"] == "Visits"
    assert job["dataset_name"] == "visits"
    page = me.client.get(f"/ui/jobs/{job_id}")
    assert "Download the result" in page.text and html.escape(job["download_url"]) in page.text


def test_schedules_are_listed_and_edited(service: Service, me: Browser) -> None:
    created = me.post(
        "/ui/reports",
        {
            "report_type": "pdf",
            "dataset": "demo:sales",
            "rows": "1000",
            "action": "schedule",
            "schedule_name": "Weekly sales",
            "cron": "0 8 * * 1",
            "timezone": "Europe/Paris",
        },
    )
    assert created.status_code == 303, created.text
    path = created.headers["location"]
    listed = me.client.get("/ui/schedules")
    assert "Weekly sales" in listed.text and "0 8 * * 1" in listed.text
    bad = me.post(path, {"name": "Weekly sales", "timing": "cron", "cron": "61 8 * * 1"})
    assert bad.status_code == 422 and "cron" in bad.text
    zone = me.post(path, {"name": "W", "timing": "cron", "cron": "0 9 * * 1", "timezone": "Mars/X"})
    assert zone.status_code == 422 and "Mars/X" in zone.text
    refused = me.post(
        path,
        {
            "name": "W",
            "timing": "cron",
            "cron": "0 9 * * 1",
            "timezone": "UTC",
            "delivery": "email",
            "recipients": "boss@elsewhere.example",
        },
    )
    assert refused.status_code == 422 and "recipients" in refused.text
    saved = me.post(
        path,
        {
            "name": "Daily sales",
            "timing": "interval",
            "interval_seconds": "3600",
            "timezone": "UTC",
            "paused": "on",
        },
    )
    assert saved.status_code == 200 and "Saved." in saved.text
    schedule = service.client.get(
        f"/schedules/{path.rsplit('/', 1)[1]}", headers=service.headers(me_token(service, me))
    ).json()
    assert schedule["name"] == "Daily sales" and schedule["interval_seconds"] == 3600
    assert schedule["paused"] is True
    ran = me.post(f"{path}/run")
    assert ran.status_code == 303 and ran.headers["location"].startswith("/ui/jobs/")
    other = Browser(service, service.token())
    assert other.client.get(path).status_code == 404
    assert other.post(f"{path}/delete").status_code == 404
    assert me.post(f"{path}/delete").status_code == 303
    assert me.client.get(path).status_code == 404


def test_admins_see_everyones_jobs_and_the_queues(service: Service, me: Browser) -> None:
    someone = service.token()
    job_id = _dummy(service, someone)
    admin = Browser(service, service.token(admin=True))
    page = admin.client.get("/ui/jobs")
    assert f'data-job-id="{job_id}"' in page.text and "Owner" in page.text
    assert f'data-job-id="{job_id}"' not in me.client.get("/ui/jobs").text
    queues = admin.client.get("/ui/queues")
    assert queues.status_code == 200 and "notifications" in queues.text
    assert me.client.get("/ui/queues").status_code == 404


def test_list_filters_refuse_bad_values_with_a_message(me: Browser) -> None:
    bad_day = me.client.get("/ui/jobs?since=31/01/2026")
    assert bad_day.status_code == 422 and "YYYY-MM-DD" in bad_day.text
    bad_status = me.client.get("/ui/jobs?status=lost")
    assert bad_status.status_code == 422 and "status: not one of" in bad_status.text
    assert me.client.get("/ui/jobs?since=2020-01-01&until=2020-01-02").status_code == 200
    too_long = me.client.get("/ui/jobs?status=" + "x" * 50)
    assert too_long.status_code == 422 and "text/html" in too_long.headers["content-type"]
    assert "status: String should have at most 20 characters" in too_long.text
