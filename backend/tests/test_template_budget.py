"""Templates sent through the API cannot stall or exhaust the service (issue 12).

Each attack goes over HTTP to a running service (its embedded workers mail a real SMTP
server): the request is a 4xx, or the job (or recipient) fails with a reason that says which
limit; a normal request is served meanwhile. Compiling never evaluates the template, which a
thread joined with a timeout shows (no timing assertion: a hung compile would never end).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from app.jobs.errors import JobCancelled
from app.notifications.sandbox import Limits
from app.notifications.templates import TemplateProblem, compile_template
from tests.conftest import DATABASES, Service
from tests.test_notifications import SmtpServer, running_mail_service, running_smtp

POW = "{{ 9**(9**7) }}"
BIG_STRING = '{{ "a" * 300000000 }}'
NESTED = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
WIDE = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
RECURSIVE = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(1) }}"
OUTPUT = '{% for i in range(5000) %}{{ "x" * 1000 }}{% endfor %}'


def compiles_promptly(body: str) -> None:
    """Compile in a thread; it must finish (a folded 9**(9**7) would hold it for seconds)."""
    errors: list[BaseException] = []

    def work() -> None:
        try:
            compile_template(subject="s", body=body)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    thread.join(timeout=20)
    assert not thread.is_alive(), f"compiling {body!r} evaluated it"
    assert not errors, errors


@pytest.mark.parametrize(
    "body",
    [POW, BIG_STRING, NESTED, '{{ "a"|center(1000000000) }}', '{{ "%0100000000d" % 1 }}'],
)
def test_compiling_never_evaluates(body: str) -> None:
    compiles_promptly(body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (POW, "4096 bits"),
        (BIG_STRING, "over the limit of 1,000,000"),
        (NESTED, "range() of 100,000 items"),
        (WIDE, "too much work"),
        (RECURSIVE, "recurses too deeply"),
        (OUTPUT, "output limit"),
        ('{{ "a"|center(1000000000) }}', "over the limit"),
        ('{{ "{:>100000000}".format(1) }}', "over the limit"),
        ('{{ (["x" * 1000000] * 1000)|join }}', "joined text"),
        (
            '{% set ns = namespace(s="ab") %}{% for i in range(40) %}'
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
            "joined string",
        ),
        (
            '{% macro m() %}{% for i in range(10000) %}{{ "y" * 100000 }}{% endfor %}'
            "{% endmacro %}{{ m()|length }}",
            "too much output",
        ),
        ("{{ lipsum(100000) }}", "'lipsum' is undefined"),
    ],
)
def test_rendering_stops_with_a_reason(body: str, reason: str) -> None:
    template = compile_template(subject="s", body=body)
    with pytest.raises(TemplateProblem, match="cannot be rendered") as caught:
        template.render({}, limits=Limits())
    assert reason in str(caught.value)


def test_a_long_render_checks_cancellation() -> None:
    calls = 0

    def check() -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise JobCancelled("cancelled")

    template = compile_template(subject="s", body=WIDE)
    with pytest.raises(JobCancelled):
        template.render({}, check=check, limits=Limits(max_operations=10**9))
    assert calls == 3


def test_normal_templates_still_render() -> None:
    body = (
        'Hello {{ name }}, {{ "%5d"|format(3) }} {{ items|join(", ") }} {{ n|default(12345678) }}'
        ' {{ "ab" ~ "cd" }} {{ 2 ** 10 }} {{ "-" * 3 }}{% for i in range(3) %}{{ i }}{% endfor %}'
    )
    mail = compile_template(subject="Hi {{ name }}", body=body).render(
        {"name": "Bob", "items": ["a", "b"]}, limits=Limits()
    )
    assert mail.subject == "Hi Bob"
    assert mail.text == "Hello Bob,     3 a, b 12345678 abcd 1024 ---012"


# --------------------------------------------------------------------------- over HTTP
@pytest.fixture(scope="module")
def module_smtp() -> Iterator[SmtpServer]:
    with running_smtp() as server:
        yield server


@pytest.fixture(scope="module", params=DATABASES)
def service(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    module_smtp: SmtpServer,
) -> Iterator[Service]:
    with running_mail_service(
        request.param,
        tmp_path_factory.mktemp(f"budget-{request.param}"),
        module_smtp,
        MAIL_ALLOWED_DOMAINS="example.com",
    ) as svc:
        yield svc


@pytest.fixture
def auth(service: Service) -> dict[str, str]:
    return service.headers(service.token())


def normal_mail_is_served(service: Service, auth: dict[str, str], module_smtp: SmtpServer) -> None:
    assert service.client.get("/health/live").status_code == 200
    to = f"{service.db_kind}-normal@example.com"
    response = service.client.post(
        "/notifications/email",
        headers=auth,
        json={"to": to, "subject": "Hi {{ n }}", "body": "n={{ n }}", "context": {"n": 1}},
    )
    assert response.status_code == 202, response.text
    job = service.wait(response.json()["job_id"], auth)
    assert job["status"] == "completed", job


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (POW, "4096 bits"),
        (BIG_STRING, "over the limit"),
        (NESTED, "range() of 100,000 items"),
        (WIDE, "too much work"),
        (RECURSIVE, "recurses too deeply"),
        (OUTPUT, "output limit of 1,000,000 bytes"),
    ],
)
def test_an_attack_mail_fails_with_a_reason(
    service: Service,
    auth: dict[str, str],
    module_smtp: SmtpServer,
    body: str,
    reason: str,
) -> None:
    response = service.client.post(
        "/notifications/email",
        headers=auth,
        json={"to": f"{service.db_kind}-victim@example.com", "subject": "s", "body": body},
    )
    assert response.status_code == 202, response.text
    normal_mail_is_served(service, auth, module_smtp)
    job = service.wait(response.json()["job_id"], auth)
    assert job["status"] == "failed", job
    assert reason in job["error"]
    assert "/work" not in job["error"] and "site-packages" not in job["error"]


def test_a_bulk_attack_fails_each_recipient_and_completes(
    service: Service, auth: dict[str, str], module_smtp: SmtpServer
) -> None:
    body = "{% if deep %}" + RECURSIVE + "{% else %}Hello {{ email }}{% endif %}"
    recipients: list[dict[str, Any]] = [
        {"email": f"{service.db_kind}-bulk{i}@example.com", "context": {"deep": i % 2 == 0}}
        for i in range(6)
    ]
    response = service.client.post(
        "/notifications/bulk",
        headers=auth,
        json={"subject": "s", "body": body, "recipients": recipients},
    )
    assert response.status_code == 202, response.text
    job = service.wait(response.json()["job_id"], auth)
    assert job["status"] == "completed", job
    result = job["result"]
    assert result["sent"] == 3 and result["failed"] == 3
    failed = [r for r in result["recipients"] if r["status"] == "failed"]
    assert all("recurses too deeply" in r["error"] for r in failed)


def test_cancel_stops_a_long_bulk_render(
    service: Service, auth: dict[str, str], module_smtp: SmtpServer
) -> None:
    recipients = [{"email": f"{service.db_kind}-slow{i}@example.com"} for i in range(500)]
    body = "{% for i in range(9000) %}{% for j in range(99) %}{% endfor %}{% endfor %}ok"
    response = service.client.post(
        "/notifications/bulk",
        headers=auth,
        json={"subject": "s", "body": body, "recipients": recipients},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    service.wait(job_id, auth, statuses={"started", "running"})
    normal_mail_is_served(service, auth, module_smtp)
    service.client.post(f"/reports/jobs/{job_id}/cancel", headers=auth)
    job = service.wait(job_id, auth, timeout=30)
    assert job["status"] == "cancelled", job


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{% include "report_ready.txt" %}', "{% include %} is not allowed"),
        ('{% import "report_ready.txt" as x %}', "{% import %} is not allowed"),
        ('{% extends "report_ready.txt" %}', "{% extends %} is not allowed"),
        ("{{ 1" + "0" * 5000 + " }}", "does not compile"),
        ("x {{ a }} " * 3000, "the template is too long"),
        ("{{ " + "(" * 300 + "1" + ")" * 300 + " }}", "nests too deeply"),
    ],
)
def test_refused_templates_are_a_422_without_a_path(
    service: Service, auth: dict[str, str], body: str, reason: str
) -> None:
    response = service.client.post(
        "/notifications/email",
        headers=auth,
        json={"to": "a@example.com", "subject": "s", "body": body},
    )
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert reason in detail and "/work" not in detail and "site-packages" not in detail
