"""Report schedules over the API (app/api/routes/schedules.py), in embedded mode with a real
SMTP server (aiosmtpd): owner-only like jobs, checked at creation (422 naming the field), each
firing an ordinary job, delivery by e-mail, and a schedule that pauses itself after failing
SCHEDULE_MAX_FAILURES times in a row. The scheduler's clock is the test's (`tick(now=...)`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from app.core.config import set_settings
from app.db.session import session_scope
from app.jobs.models import ReportJob
from app.schedules.models import Schedule
from app.schedules.tick import tick
from tests.conftest import Service
from tests.test_notifications import SmtpServer, running_mail_service, running_smtp

REPORT = {"report_type": "excel", "dataset": {"source": "demo", "rows": 200}, "title": "Daily"}


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with running_smtp() as server:
        yield server


@pytest.fixture(scope="module")
def svc(smtp: SmtpServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_mail_service(
        "sqlite", tmp_path_factory.mktemp("sched"), smtp, JOB_MAX_RETRIES=0
    ) as service:
        yield service


@pytest.fixture
def owner(svc: Service) -> dict[str, str]:
    set_settings(svc.settings)
    return svc.headers(svc.token(email="owner@example.com"))


def create(svc: Service, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    payload = {"name": "daily", "report": REPORT, "cron": "0 8 * * *", "timezone": "Europe/Paris"}
    payload.update(body)
    response = svc.client.post("/schedules", json=payload, headers=headers)
    assert response.status_code == 201, response.text
    assert response.headers["Location"] == f"/schedules/{response.json()['id']}"
    return dict(response.json())


def test_crud_and_another_users_schedule_is_404(svc: Service, owner: dict[str, str]) -> None:
    body = create(svc, owner, interval_seconds=3600, cron=None)
    sid = body["id"]
    assert body["report_type"] == "excel" and body["delivery"] == "none"
    assert [s["id"] for s in svc.client.get("/schedules", headers=owner).json()["items"]] == [sid]
    other = svc.headers(svc.token())
    assert svc.client.get("/schedules", headers=other).json()["items"] == []
    for method, path in [
        ("GET", f"/schedules/{sid}"),
        ("PATCH", f"/schedules/{sid}"),
        ("DELETE", f"/schedules/{sid}"),
        ("POST", f"/schedules/{sid}/run"),
    ]:
        kwargs: dict[str, Any] = {"json": {"paused": True}} if method == "PATCH" else {}
        response = svc.client.request(method, path, headers=other, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
    # The duties are schedule rows too, and nobody's through the API.
    assert svc.client.get("/schedules/duty-health-check", headers=owner).status_code == 404
    patched = svc.client.patch(f"/schedules/{sid}", json={"paused": True}, headers=owner)
    assert patched.status_code == 200 and patched.json()["paused"] is True
    assert svc.client.delete(f"/schedules/{sid}", headers=owner).status_code == 204
    assert svc.client.get(f"/schedules/{sid}", headers=owner).status_code == 404


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "0 25 * * *"}, "cron"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        (
            {"report": {**REPORT, "dataset": {"source": "upload", "dataset_id": "nope"}}},
            "report.dataset.dataset_id",
        ),
        ({"report": {**REPORT, "group_by": ["no_such_column"]}}, "report"),
    ],
)
def test_invalid_schedules_are_422_naming_the_field(
    svc: Service, owner: dict[str, str], change: dict[str, Any], field: str
) -> None:
    payload = {"name": "x", "report": REPORT, "cron": "0 8 * * *", **change}
    response = svc.client.post("/schedules", json=payload, headers=owner)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"{field}:"), response.text


def test_email_delivery_without_an_address_is_422(svc: Service) -> None:
    set_settings(svc.settings)
    no_mail = svc.headers(svc.token())
    payload = {"name": "x", "report": REPORT, "cron": "0 8 * * *", "delivery": "email"}
    response = svc.client.post("/schedules", json=payload, headers=no_mail)
    assert response.status_code == 422 and response.json()["detail"].startswith("delivery:")


def test_a_due_schedule_mails_its_report_to_the_owner(
    svc: Service, owner: dict[str, str], smtp: SmtpServer
) -> None:
    sid = create(svc, owner, delivery="email")["id"]
    due = datetime.fromisoformat(
        svc.client.get(f"/schedules/{sid}", headers=owner).json()["next_due_at"]
    )
    assert due.astimezone(UTC).hour in (6, 7)  # 08:00 in Paris
    fired = [f for f in tick(svc.settings, now=due).fired if f.schedule_id == sid]
    assert len(fired) == 1 and fired[0].job_id
    job = svc.wait(fired[0].job_id, owner)
    assert job["status"] == "completed", job
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        mails = [m for m in smtp.recorder.messages if "owner@example.com" in m.rcpt_tos]
        if mails:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("no report-ready mail reached the SMTP server")
    assert fired[0].job_id in mails[0].message.get_body().get_content()
    read = svc.client.get(f"/schedules/{sid}", headers=owner).json()
    assert read["recent_firings"][0]["job_id"] == fired[0].job_id
    # Run now: another ordinary job, outside the schedule's times.
    run = svc.client.post(f"/schedules/{sid}/run", headers=owner)
    assert run.status_code == 202, run.text
    assert svc.wait(run.json()["job_id"], owner)["status"] == "completed"


def test_a_schedule_failing_three_times_in_a_row_pauses_itself(
    svc: Service, owner: dict[str, str]
) -> None:
    sid = create(svc, owner, interval_seconds=3600, cron=None)["id"]
    with session_scope() as session:  # a job that always fails (JOB_MAX_RETRIES=0)
        session.execute(
            update(Schedule)
            .where(Schedule.id == sid)
            .values(params={"job_type": "dummy", "job_params": {"fail_times": 5}})
        )
        row = session.get(Schedule, sid)
        assert row is not None
        due = row.next_due_at
    for _ in range(3):
        [fired] = [f for f in tick(svc.settings, now=due).fired if f.schedule_id == sid]
        assert fired.job_id is not None
        assert svc.wait(fired.job_id, owner)["status"] == "failed"
        tick(svc.settings, now=due)  # settles the outcome
        due += timedelta(hours=1)
    body = svc.client.get(f"/schedules/{sid}", headers=owner).json()
    assert body["paused"] is True and body["consecutive_failures"] == 3
    assert body["paused_reason"].startswith("paused after 3 failed runs in a row")
    assert [f for f in tick(svc.settings, now=due).fired if f.schedule_id == sid] == []
    with session_scope() as session:
        job = session.get(ReportJob, fired.job_id)
        assert job is not None and job.params["schedule_id"] == sid
    resumed = svc.client.patch(f"/schedules/{sid}", json={"paused": False}, headers=owner)
    assert resumed.json()["paused"] is False and resumed.json()["paused_reason"] is None
