"""How a schedule delivers its reports (app/schedules/delivery.py, the report-ready follow-up
in app/notifications/report_ready.py), in embedded mode against a real SMTP server
(aiosmtpd) and a real HTTP receiver, the scheduler's clock the test's (`tick(now=...)`):

- 'email' with recipients: each firing mails the owner and an allowed non-owner recipient
  the download link; a recipient the owner may not mail (outside MAIL_ALLOWED_DOMAINS) is
  a 422 naming `recipients`, at creation and at PATCH;
- the daily cap (MAIL_RECIPIENTS_PER_DAY) applies when a firing's mail is made: refused,
  the report is still made, and its firing's outcome says why;
- 'webhook': each firing's final job is POSTed, signed, to the report's webhook_url; without
  one, or with a private one (unless allowed), a 422 naming the field.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.config import set_settings
from app.db.session import session_scope
from app.jobs.models import ReportJob
from app.schedules.tick import tick
from app.users.models import User
from tests.conftest import Service
from tests.test_notifications import SmtpServer, running_mail_service, running_smtp
from tests.test_webhooks import (
    SECRET,
    Receiver,
    private_refused,
    running_receiver,
    signature,
)

REPORT = {"report_type": "excel", "dataset": {"source": "demo", "rows": 200}, "title": "Weekly"}
DAILY_CAP = 40

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpServer]:
    with running_smtp() as server:
        yield server


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


@pytest.fixture(scope="module")
def svc(smtp: SmtpServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_mail_service(
        "sqlite",
        tmp_path_factory.mktemp("sched-delivery"),
        smtp,
        JOB_MAX_RETRIES=0,
        MAIL_ALLOWED_DOMAINS="example.com",
        MAIL_RECIPIENTS_PER_DAY=DAILY_CAP,
        WEBHOOK_ALLOW_PRIVATE=True,  # the receiver is on loopback
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_BACKOFF_SECONDS=0.3,
    ) as service:
        yield service


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@example.com"


def owner_of(svc: Service, email: str) -> dict[str, str]:
    set_settings(svc.settings)
    return svc.headers(svc.token(email=email))


def post(svc: Service, headers: dict[str, str], **body: Any) -> Any:
    payload = {"name": "weekly", "report": REPORT, "interval_seconds": 3600}
    payload.update(body)
    return svc.client.post("/schedules", json=payload, headers=headers)


def create(svc: Service, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    response = post(svc, headers, **body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def fire(svc: Service, headers: dict[str, str], schedule_id: str) -> str:
    """Tick at the schedule's due time; the id of the job its firing made, once final."""
    due = datetime.fromisoformat(
        svc.client.get(f"/schedules/{schedule_id}", headers=headers).json()["next_due_at"]
    )
    [fired] = [f for f in tick(svc.settings, now=due).fired if f.schedule_id == schedule_id]
    assert fired.job_id is not None, fired
    assert svc.wait(fired.job_id, headers)["status"] == "completed"
    return fired.job_id


def mails_to(smtp: SmtpServer, address: str, timeout: float = 30.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with smtp.recorder.lock:
            found = [m for m in smtp.recorder.messages if address in m.rcpt_tos]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no mail reached {address}")


def test_a_firing_mails_the_owner_and_an_allowed_recipient_the_link(
    svc: Service, smtp: SmtpServer
) -> None:
    owner, colleague = unique("owner"), unique("colleague")
    headers = owner_of(svc, owner)
    body = create(svc, headers, delivery="email", recipients=[colleague, owner, colleague])
    assert body["delivery"] == "email" and body["recipients"] == [colleague]  # once, not the owner
    job_id = fire(svc, headers, body["id"])
    for address in (owner, colleague):
        [mail] = mails_to(smtp, address)
        text = mail.message.get_body(preferencelist=("plain",)).get_content()
        assert f"/reports/jobs/{job_id}/download?" in text, text
        assert set(mail.rcpt_tos) == {owner, colleague}
    # The link opens without a token: the colleague has none.
    link = next(w for w in text.split() if "/download?" in w)
    opened = svc.client.get(link[link.index("/reports/") :])
    assert opened.status_code == 200 and opened.content[:2] == b"PK"  # the Excel file


def test_a_recipient_outside_the_allowed_domains_is_a_422_naming_recipients(
    svc: Service,
) -> None:
    headers = owner_of(svc, unique("owner"))
    refused = post(svc, headers, delivery="email", recipients=[unique("ok"), "boss@other.org"])
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert detail.startswith("recipients: ") and "boss@other.org" in detail, detail
    assert "MAIL_ALLOWED_DOMAINS" in detail and "Remove these addresses" in detail
    malformed = post(svc, headers, delivery="email", recipients=["not-an-address"])
    assert malformed.status_code == 422
    assert malformed.json()["detail"].startswith("recipients"), malformed.text
    without_mail = post(svc, headers, recipients=[unique("ok")])  # delivery 'none'
    assert without_mail.status_code == 422
    assert without_mail.json()["detail"].startswith("recipients: "), without_mail.text
    # PATCH is checked the same way; a delivery that no longer mails drops the list.
    sid = create(svc, headers, delivery="email", recipients=[unique("first")])["id"]
    patched = svc.client.patch(
        f"/schedules/{sid}", json={"recipients": ["x@other.org"]}, headers=headers
    )
    assert patched.status_code == 422 and patched.json()["detail"].startswith("recipients: ")
    fine = unique("second")
    patched = svc.client.patch(f"/schedules/{sid}", json={"recipients": [fine]}, headers=headers)
    assert patched.status_code == 200 and patched.json()["recipients"] == [fine]
    off = svc.client.patch(f"/schedules/{sid}", json={"delivery": "none"}, headers=headers)
    assert off.status_code == 200, off.text
    assert (off.json()["delivery"], off.json()["recipients"]) == ("none", [])


def test_the_daily_cap_refuses_a_firing_s_mail_and_the_firing_says_why(
    svc: Service, smtp: SmtpServer
) -> None:
    owner, colleague = unique("capped"), unique("capped-colleague")
    headers = owner_of(svc, owner)
    sid = create(svc, headers, delivery="email", recipients=[colleague])["id"]
    with session_scope() as session:  # today's mail so far: all but one recipient of the cap
        owner_id = session.scalars(select(User.id).where(User.email == owner)).one()
        session.add(
            ReportJob(
                owner_id=owner_id,
                job_type="email",
                queue="notifications",
                status="cancelled",
                params={"to": [unique("earlier") for _ in range(DAILY_CAP - 1)]},
            )
        )
    job_id = fire(svc, headers, sid)  # owner + colleague: 2 more, over the cap
    job = svc.client.get(f"/reports/jobs/{job_id}", headers=headers).json()
    assert "daily mail limit reached" in job["result"]["mail_not_sent"], job["result"]
    assert "MAIL_RECIPIENTS_PER_DAY" in job["result"]["mail_not_sent"]
    with session_scope() as session:  # no mail job was made (it is made with the completion)
        mails = session.scalar(
            select(func.count())
            .select_from(ReportJob)
            .where(ReportJob.owner_id == owner_id, ReportJob.job_type == "email")
        )
    assert mails == 1
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        tick(svc.settings)  # settles the firing
        [firing] = svc.client.get(f"/schedules/{sid}", headers=headers).json()["recent_firings"]
        if firing["outcome"]:
            break
        time.sleep(0.1)
    assert firing["outcome"].startswith(f"completed (job {job_id}); mail not sent: daily mail")
    read = svc.client.get(f"/schedules/{sid}", headers=headers).json()
    assert read["consecutive_failures"] == 0 and read["paused"] is False  # the report was made
    assert not [m for m in smtp.recorder.messages if colleague in m.rcpt_tos]


def test_a_webhook_delivered_schedule_posts_each_report_to_its_receiver(
    svc: Service, receiver: Receiver
) -> None:
    headers = owner_of(svc, unique("hooked"))
    path = receiver.fresh_path("schedule")
    report = {**REPORT, "webhook_url": receiver.url(path)}
    body = create(svc, headers, delivery="webhook", report=report)
    assert (body["delivery"], body["webhook_url"]) == ("webhook", receiver.url(path))
    job_id = fire(svc, headers, body["id"])
    [got] = receiver.wait_for(path, 1)
    assert got.headers["X-Webhook-Signature"] == signature(got.body)
    sent = json.loads(got.body)
    assert (sent["job_id"], sent["status"]) == (job_id, "completed")
    with session_scope() as session:
        job = session.get(ReportJob, job_id)
        assert job is not None and "notify" not in job.params  # a webhook, no mail


def test_webhook_delivery_needs_a_public_webhook_url(svc: Service) -> None:
    headers = owner_of(svc, unique("hookless"))
    missing = post(svc, headers, delivery="webhook")
    assert missing.status_code == 422, missing.text
    assert missing.json()["detail"].startswith("report.webhook_url: delivery 'webhook'")
    with private_refused(svc):
        private = post(
            svc, headers, delivery="webhook", report={**REPORT, "webhook_url": "http://10.1.2.3/"}
        )
    assert private.status_code == 422, private.text
    assert private.json()["detail"].startswith("report.webhook_url: 10.1.2.3 resolves to a private")
    sid = create(svc, headers)["id"]
    patched = svc.client.patch(f"/schedules/{sid}", json={"delivery": "webhook"}, headers=headers)
    assert patched.status_code == 422 and patched.json()["detail"].startswith("webhook_url: ")
    with private_refused(svc):
        patched = svc.client.patch(
            f"/schedules/{sid}",
            json={"delivery": "webhook", "webhook_url": "http://127.0.0.1:9/x"},
            headers=headers,
        )
    assert patched.status_code == 422 and "loopback" in patched.json()["detail"]
    url = "http://127.0.0.1:9/hook"
    patched = svc.client.patch(
        f"/schedules/{sid}", json={"delivery": "webhook", "webhook_url": url}, headers=headers
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["delivery"], patched.json()["webhook_url"]) == ("webhook", url)
