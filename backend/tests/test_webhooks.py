"""Completion webhooks (issue 14), against a real receiver on a free port and the service with
its embedded worker processes and relay thread: signed, once, retried with a backoff, never
redirected, sent for every final status; private targets refused (SSRF); concurrent passes
deliver once. Loopback receivers need WEBHOOK_ALLOW_PRIVATE=true, which the service sets;
the SSRF tests turn it off for their requests."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app.core.config import set_settings
from app.webhooks import sender
from app.webhooks.target import why_refused
from tests.conftest import DATABASES, Service, running_service

SECRET = "webhook-test-secret"
MAX_ATTEMPTS = 3
BACKOFF = 0.3

pytestmark = pytest.mark.timeout(120)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float


class Receiver:
    """A real HTTP server: per path, a script of answers (status, headers, delay), then 200."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.scripts: dict[str, list[tuple[int, dict[str, str], float]]] = {}
        self.always: dict[str, tuple[int, dict[str, str]]] = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append(
                        Received(self.path, dict(self.headers.items()), body, time.monotonic())
                    )
                    script = receiver.scripts.get(self.path)
                    status, headers, delay = (
                        script.pop(0)
                        if script
                        else (*receiver.always.get(self.path, (200, {})), 0.0)
                    )
                time.sleep(delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def fresh_path(self, name: str) -> str:
        return f"/{name}-{uuid.uuid4().hex[:8]}"

    def at(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(got := self.at(path)) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{path}: {len(self.at(path))} requests, expected {count}")


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    """A `Receiver` serving on a free loopback port until the block ends."""
    server = Receiver()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with running_receiver() as server:
        yield server


@pytest.fixture(scope="module", params=DATABASES)
def hooks(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    with running_service(
        request.param,
        tmp_path_factory.mktemp(f"webhooks-{request.param}"),
        WEBHOOK_ALLOW_PRIVATE=True,
        WEBHOOK_SECRET=SECRET,
        WEBHOOK_MAX_ATTEMPTS=MAX_ATTEMPTS,
        WEBHOOK_BACKOFF_SECONDS=BACKOFF,
        WEBHOOK_TIMEOUT_SECONDS=3.0,
    ) as service:
        yield service


@pytest.fixture
def auth(hooks: Service) -> dict[str, str]:
    set_settings(hooks.settings)
    return hooks.headers(hooks.token())


@contextmanager
def private_refused(service: Service) -> Iterator[None]:
    service.settings.WEBHOOK_ALLOW_PRIVATE = False
    try:
        yield
    finally:
        service.settings.WEBHOOK_ALLOW_PRIVATE = True


def submit(service: Service, auth: dict[str, str], url: str, **body: Any) -> str:
    response = service.client.post(
        "/reports/dummy", json={**body, "webhook_url": url}, headers=auth
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def deliveries(service: Service, auth: dict[str, str], job_id: str) -> dict[str, Any]:
    response = service.client.get(f"/reports/jobs/{job_id}/webhook-deliveries", headers=auth)
    assert response.status_code == 200, response.text
    return dict(response.json())


def wait_deliveries(
    service: Service, auth: dict[str, str], job_id: str, count: int, timeout: float = 20.0
) -> dict[str, Any]:
    """Until `count` attempts are recorded and finished."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        hook = deliveries(service, auth, job_id)
        done = [d for d in hook["deliveries"] if d["finished_at"] is not None]
        if len(done) >= count:
            return hook
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: {deliveries(service, auth, job_id)}")


def signature(body: bytes) -> str:
    return "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def test_a_completed_job_is_delivered_once_signed(
    hooks: Service, auth: dict[str, str], receiver: Receiver
) -> None:
    path = receiver.fresh_path("ok")
    job_id = submit(hooks, auth, receiver.url(path))
    job = hooks.wait(job_id, auth)
    assert job["status"] == "completed"
    [got] = receiver.wait_for(path, 1)
    assert got.headers["X-Webhook-Signature"] == signature(got.body)
    assert got.headers["X-Webhook-Id"] == job_id
    assert got.headers["X-Webhook-Attempt"] == "1"
    assert abs(int(got.headers["X-Webhook-Timestamp"]) - time.time()) < 60
    assert got.headers["Content-Type"] == "application/json"
    sent = json.loads(got.body)
    ignore = {"download_url", "backend_state"}  # a link signed at another second
    assert {k: v for k, v in sent.items() if k not in ignore} == {
        k: v for k, v in job.items() if k not in ignore
    }
    assert sent["download_url"].startswith(f"/reports/jobs/{job_id}/download?")
    hook = wait_deliveries(hooks, auth, job_id, 1)
    assert hook["url"] == receiver.url(path) and hook["delivered"] is True
    [attempt] = hook["deliveries"]
    assert (attempt["attempt"], attempt["status_code"], attempt["error"]) == (1, 200, None)
    assert attempt["next_attempt_at"] is None
    time.sleep(hooks.settings.RELAY_INTERVAL_SECONDS * 4)  # a few more relay passes
    assert len(receiver.at(path)) == 1


def test_a_failing_receiver_is_retried_with_backoff(
    hooks: Service, auth: dict[str, str], receiver: Receiver
) -> None:
    path = receiver.fresh_path("flaky")
    receiver.scripts[path] = [(500, {}, 0.0), (500, {}, 0.0)]
    job_id = submit(hooks, auth, receiver.url(path))
    got = receiver.wait_for(path, 3)
    gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
    assert gaps[0] >= BACKOFF * 0.9 and gaps[1] >= 2 * BACKOFF * 0.9, gaps
    assert [r.headers["X-Webhook-Attempt"] for r in got] == ["1", "2", "3"]
    assert {r.headers["X-Webhook-Id"] for r in got} == {job_id}
    hook = wait_deliveries(hooks, auth, job_id, 3)
    assert hook["delivered"] is True
    outcomes = [(d["attempt"], d["status_code"], d["error"]) for d in hook["deliveries"]]
    assert outcomes == [(1, 500, "HTTP 500"), (2, 500, "HTTP 500"), (3, 200, None)]
    time.sleep(hooks.settings.RELAY_INTERVAL_SECONDS * 3)
    assert len(receiver.at(path)) == 3


def test_a_redirect_is_not_followed(
    hooks: Service, auth: dict[str, str], receiver: Receiver
) -> None:
    path, elsewhere = receiver.fresh_path("moved"), receiver.fresh_path("elsewhere")
    receiver.always[path] = (302, {"Location": receiver.url(elsewhere)})
    job_id = submit(hooks, auth, receiver.url(path))
    hook = wait_deliveries(hooks, auth, job_id, MAX_ATTEMPTS)
    assert hook["delivered"] is False
    for attempt in hook["deliveries"]:
        assert attempt["status_code"] == 302
        assert "not followed" in attempt["error"], attempt
    assert hook["deliveries"][-1]["next_attempt_at"] is None  # given up
    time.sleep(hooks.settings.RELAY_INTERVAL_SECONDS * 3)
    assert len(receiver.at(path)) == MAX_ATTEMPTS
    assert receiver.at(elsewhere) == []


def test_failed_and_cancelled_jobs_send_their_webhook(
    hooks: Service, auth: dict[str, str], receiver: Receiver
) -> None:
    failing, cancelled = receiver.fresh_path("failed"), receiver.fresh_path("cancelled")
    failed_id = submit(hooks, auth, receiver.url(failing), fail_times=5)
    cancelled_id = submit(hooks, auth, receiver.url(cancelled), delay_seconds=30)
    response = hooks.client.post(f"/reports/jobs/{cancelled_id}/cancel", headers=auth)
    assert response.status_code == 200, response.text
    [got] = receiver.wait_for(cancelled, 1)
    assert json.loads(got.body)["status"] == "cancelled"
    assert got.headers["X-Webhook-Signature"] == signature(got.body)
    assert hooks.wait(failed_id, auth)["status"] == "failed"
    [got] = receiver.wait_for(failing, 1)
    body = json.loads(got.body)
    assert (body["job_id"], body["status"]) == (failed_id, "failed")
    assert body["error"]


PRIVATE = [
    ("http://127.0.0.1/hook", "loopback address (127.0.0.1)"),
    ("http://10.0.0.1/", "private address (10.0.0.1)"),
    ("http://169.254.169.254/latest/meta-data/", "link-local address (169.254.169.254)"),
    ("http://[::1]:8080/hook", "loopback address (::1)"),
    ("http://[::ffff:10.0.0.5]/", "private address"),
    ("https://localhost:9/hook", "localhost resolves to a loopback address"),
    ("http://0.0.0.0/", "unspecified address"),
]


@pytest.mark.parametrize(("url", "why"), PRIVATE)
def test_private_targets_are_refused_at_submit(
    hooks: Service, auth: dict[str, str], url: str, why: str
) -> None:
    with private_refused(hooks):
        response = hooks.client.post("/reports/dummy", json={"webhook_url": url}, headers=auth)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail.startswith("webhook_url: ") and why in detail, detail
    assert "set WEBHOOK_ALLOW_PRIVATE=true to allow it" in detail


def test_the_heavy_route_checks_its_webhook_too(hooks: Service, auth: dict[str, str]) -> None:
    body = {"report_type": "excel", "dataset": {"rows": 100}, "webhook_url": "http://10.0.0.5/x"}
    with private_refused(hooks):
        response = hooks.client.post("/reports/heavy", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == (
        "webhook_url: 10.0.0.5 resolves to a private address (10.0.0.5); "
        "set WEBHOOK_ALLOW_PRIVATE=true to allow it"
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.com/hook", "string_pattern_mismatch"),
        ("http://user:pw@example.com/", "must not carry credentials"),
        ("http://no-such-host.invalid/", "does not resolve"),
        ("http://example.com:99999/", "not a valid URL"),
    ],
)
def test_malformed_targets_are_refused(
    hooks: Service, auth: dict[str, str], url: str, why: str
) -> None:
    response = hooks.client.post("/reports/dummy", json={"webhook_url": url}, headers=auth)
    assert response.status_code == 422, response.text
    assert why in response.text


def test_the_target_is_checked_again_at_delivery(
    hooks: Service, auth: dict[str, str], receiver: Receiver
) -> None:
    """Allowed at submit, refused when sent (as a name rebound to 127.0.0.1 would be)."""
    path = receiver.fresh_path("rebound")
    job_id = submit(hooks, auth, receiver.url(path), delay_seconds=1)
    with private_refused(hooks):
        hook = wait_deliveries(hooks, auth, job_id, 1)
    assert hook["deliveries"][0]["error"].startswith("refused: 127.0.0.1 resolves to a loopback")
    assert hook["deliveries"][0]["status_code"] is None
    assert receiver.at(path) == [] or hook["delivered"]  # a retry after the switch may pass


def test_concurrent_passes_deliver_once(
    hooks: Service, auth: dict[str, str], receiver: Receiver
) -> None:
    """Four passes of this process race the service's relay thread for one webhook."""
    path = receiver.fresh_path("raced")
    receiver.scripts[path] = [(200, {}, 1.0)]  # slow: the others keep passing meanwhile
    start = threading.Barrier(5)
    stop = time.monotonic() + 6

    def passes() -> None:
        start.wait()
        while time.monotonic() < stop:
            sender.deliver_due(hooks.settings)

    threads = [threading.Thread(target=passes) for _ in range(4)]
    for thread in threads:
        thread.start()
    job_id = submit(hooks, auth, receiver.url(path), delay_seconds=0.5)
    start.wait()
    for thread in threads:
        thread.join()
    assert len(receiver.at(path)) == 1
    hook = deliveries(hooks, auth, job_id)
    assert hook["delivered"] is True and len(hook["deliveries"]) == 1


def test_what_counts_as_public() -> None:
    import ipaddress

    assert why_refused(ipaddress.ip_address("93.184.216.34")) is None
    assert why_refused(ipaddress.ip_address("2606:4700::1111")) is None
    assert why_refused(ipaddress.ip_address("100.64.0.1")) is not None  # carrier-grade NAT
    assert why_refused(ipaddress.ip_address("224.0.0.1")) == "multicast"
    assert why_refused(ipaddress.ip_address("fe80::1")) == "link-local"
    assert why_refused(ipaddress.ip_address("fc00::1")) == "private"
