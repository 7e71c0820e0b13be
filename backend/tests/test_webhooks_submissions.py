"""A `webhook_url` on every route that creates a job (issue 14), not only the reports': one
e-mail, a bulk send, OCR and thumbnails of a document (started on it, or by its upload).

Against the service with its embedded workers, a real SMTP server (aiosmtpd) for the mail
jobs and a real HTTP receiver on loopback (WEBHOOK_ALLOW_PRIVATE=true, as in
tests/test_webhooks.py): each kind's final status is POSTed, signed, to the receiver. With
private targets refused (the default), each route answers 422 naming `webhook_url` at
submit, and an upload refused so keeps no file.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from app.core.config import set_settings
from tests.conftest import Service
from tests.test_documents import need_tesseract, png_bytes
from tests.test_notifications import SmtpServer, running_mail_service, running_smtp
from tests.test_webhooks import (
    SECRET,
    Receiver,
    private_refused,
    running_receiver,
    signature,
)

pytestmark = pytest.mark.timeout(180)

Submit = Callable[[Service, dict[str, str], str], Any]
"""(service, headers, webhook_url) -> the route's response."""


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
        tmp_path_factory.mktemp("hook-submissions"),
        smtp,
        MAIL_ALLOWED_DOMAINS="example.com",
        WEBHOOK_ALLOW_PRIVATE=True,
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_BACKOFF_SECONDS=0.3,
    ) as service:
        yield service


@pytest.fixture
def auth(svc: Service) -> dict[str, str]:
    set_settings(svc.settings)
    return svc.headers(svc.token())


def _document(svc: Service, headers: dict[str, str]) -> str:
    response = svc.client.post(
        "/documents",
        headers=headers,
        files={"file": ("scan.png", png_bytes(["webhook 42"], (600, 200)), "image/png")},
    )
    assert response.status_code == 201, response.text
    return str(response.json()["document"]["document_id"])


def email(svc: Service, headers: dict[str, str], url: str) -> Any:
    body = {"to": "a@example.com", "subject": "s", "body": "b", "webhook_url": url}
    return svc.client.post("/notifications/email", headers=headers, json=body)


def bulk(svc: Service, headers: dict[str, str], url: str) -> Any:
    body = {
        "subject": "Hello {{ name }}",
        "body": "b",
        "recipients": [{"email": f"b{i}@example.com", "context": {"name": i}} for i in range(3)],
        "webhook_url": url,
    }
    return svc.client.post("/notifications/bulk", headers=headers, json=body)


def ocr(svc: Service, headers: dict[str, str], url: str) -> Any:
    need_tesseract()
    document_id = _document(svc, headers)
    return svc.client.post(
        f"/documents/{document_id}/ocr", headers=headers, json={"webhook_url": url}
    )


def thumbnails(svc: Service, headers: dict[str, str], url: str) -> Any:
    document_id = _document(svc, headers)
    return svc.client.post(
        f"/documents/{document_id}/thumbnails", headers=headers, json={"webhook_url": url}
    )


def upload(svc: Service, headers: dict[str, str], url: str) -> Any:
    """The upload's flag starts the job; its form field carries the webhook."""
    return svc.client.post(
        "/documents",
        headers=headers,
        data={"thumbnails": "true", "webhook_url": url},
        files={"file": ("up.png", png_bytes(["upload"], (600, 200)), "image/png")},
    )


def job_id_of(response: Any) -> str:
    body = response.json()
    return str(body["jobs"]["thumbnails"]["job_id"] if "jobs" in body else body["job_id"])


ROUTES: dict[str, Submit] = {
    "email": email,
    "bulk": bulk,
    "ocr": ocr,
    "thumbnails": thumbnails,
    "upload": upload,
}


@pytest.mark.parametrize("kind", list(ROUTES))
def test_the_final_status_is_posted_signed_to_the_receiver(
    svc: Service, auth: dict[str, str], receiver: Receiver, kind: str
) -> None:
    path = receiver.fresh_path(kind)
    response = ROUTES[kind](svc, auth, receiver.url(path))
    assert response.status_code in (201, 202), response.text
    job_id = job_id_of(response)
    job = svc.wait(job_id, auth)
    assert job["status"] == "completed", job
    [got] = receiver.wait_for(path, 1)
    assert got.headers["X-Webhook-Signature"] == signature(got.body)
    assert got.headers["X-Webhook-Id"] == job_id
    sent = json.loads(got.body)
    assert (sent["job_id"], sent["status"], sent["job_type"]) == (
        job_id,
        "completed",
        job["job_type"],
    )
    hook = svc.client.get(f"/reports/jobs/{job_id}/webhook-deliveries", headers=auth).json()
    assert hook["url"] == receiver.url(path)


@pytest.mark.parametrize("kind", list(ROUTES))
def test_a_private_address_is_refused_at_submit(
    svc: Service, auth: dict[str, str], kind: str
) -> None:
    if kind == "ocr":
        need_tesseract()
    documents_before = svc.client.get("/documents", headers=auth).json()["total"]
    with private_refused(svc):
        response = ROUTES[kind](svc, auth, "http://10.0.0.7/hook")
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == (
        "webhook_url: 10.0.0.7 resolves to a private address (10.0.0.7); "
        "set WEBHOOK_ALLOW_PRIVATE=true to allow it"
    )
    documents_after = svc.client.get("/documents", headers=auth).json()["total"]
    created = 1 if kind in ("ocr", "thumbnails") else 0  # the document the job would run on
    assert documents_after == documents_before + created  # a refused upload keeps no file
    jobs = svc.client.get("/reports/jobs", headers=auth).json()
    assert jobs["total"] == 0, jobs


def test_an_upload_webhook_without_a_job_to_call_it_is_refused(
    svc: Service, auth: dict[str, str]
) -> None:
    response = svc.client.post(
        "/documents",
        headers=auth,
        data={"webhook_url": "http://127.0.0.1:9/hook"},
        files={"file": ("up.png", png_bytes(["none"], (600, 200)), "image/png")},
    )
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("webhook_url: is called when the jobs")
    assert svc.client.get("/documents", headers=auth).json()["total"] == 0
