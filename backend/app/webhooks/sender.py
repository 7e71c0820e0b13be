"""The webhook pass: find due deliveries, claim each, POST the signed job JSON, record it.

Run by every relay pass (`app.jobs.registry.PERIODIC_PATHS`), so by the API's relay thread
in embedded mode and by Celery beat's `relay_outbox` otherwise. Delivery is at least once:
a receiver that answered 2xx after our timeout, or a process that died after the POST but
before recording it, gets the webhook again. Every attempt carries the same `X-Webhook-Id`
(the job's id: a job has one final status, so one event) for receivers to deduplicate.

Request: `POST <webhook_url>` with the job as `GET /reports/jobs/{id}` shows it, and headers
`X-Webhook-Signature: sha256=<hex HMAC-SHA256 of the exact body, key WEBHOOK_SECRET>`,
`X-Webhook-Id`, `X-Webhook-Attempt`, `X-Webhook-Timestamp` (Unix seconds). Redirects are
never followed (a 3xx is a failed attempt); a 2xx is delivered; anything else is retried
after `Settings.webhook_delay` until `WEBHOOK_MAX_ATTEMPTS`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.db.session import session_scope
from app.jobs.models import ReportJob
from app.jobs.schemas import JobRead
from app.users.models import User
from app.webhooks import store
from app.webhooks.target import InvalidWebhookTarget, check

log = logging.getLogger(__name__)
USER_AGENT = "report-job-service-webhook/1"


def sign(key: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def deliver_due(settings: Settings) -> list[str]:
    """One pass: claim what is due and send it, in parallel; the delivered jobs' ids."""
    lease = 4 * settings.WEBHOOK_TIMEOUT_SECONDS + 30
    claims: list[store.Claim] = []
    with session_scope() as session:
        for job_id, attempt in store.due(session, settings):
            job = session.get(ReportJob, job_id)
            url = store.webhook_url_of(job) if job is not None else None
            if url is not None and (got := store.claim(session, job_id, attempt, url, lease)):
                claims.append(got)
    if not claims:
        return []
    with ThreadPoolExecutor(max_workers=min(len(claims), 8)) as pool:
        delivered = list(pool.map(lambda c: _attempt(settings, c), claims))
    return [c.job_id for c, ok in zip(claims, delivered, strict=True) if ok]


def _attempt(settings: Settings, claim: store.Claim) -> bool:
    started = time.monotonic()
    status_code, error = None, None
    try:
        with session_scope() as session:
            job = session.get(ReportJob, claim.job_id)
            body = _body(session, job) if job else b""
        if not body:
            error = "the job no longer exists"
        else:
            status_code, error = send(settings, claim, body)
    except Exception as exc:  # one delivery's failure must not stop the others
        log.exception("webhook of job %s: attempt %d failed", claim.job_id, claim.attempt)
        error = f"internal error: {type(exc).__name__}"
    retry_in = None
    if error is not None and claim.attempt < settings.WEBHOOK_MAX_ATTEMPTS:
        retry_in = settings.webhook_delay(claim.attempt)
    with session_scope() as session:
        store.finish(
            session,
            claim,
            status_code=status_code,
            error=error,
            duration_ms=int((time.monotonic() - started) * 1000),
            retry_in=retry_in,
        )
    log.info(
        "webhook of job %s attempt %d: %s",
        claim.job_id,
        claim.attempt,
        "delivered" if error is None else error,
    )
    return error is None


def _body(session: Session, job: ReportJob) -> bytes:
    """The job as its owner's `GET /reports/jobs/{id}` shows it (a final job: no live view)."""
    read = JobRead.model_validate(job)
    if "owner" in JobRead.model_fields:
        owner = session.get(User, job.owner_id)
        read = read.model_copy(update={"owner": owner.name if owner else None})
    return read.model_dump_json().encode()


def send(settings: Settings, claim: store.Claim, body: bytes) -> tuple[int | None, str | None]:
    """POST `body` once: (status code, None) when delivered, else (code or None, why not)."""
    try:
        target = check(claim.url, settings)  # again: DNS may have changed since the submit
    except InvalidWebhookTarget as exc:
        return None, f"refused: {exc.message.removeprefix('webhook_url: ')}"
    headers = {
        "Host": target.host_header,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Webhook-Id": claim.job_id,
        "X-Webhook-Attempt": str(claim.attempt),
        "X-Webhook-Timestamp": str(int(time.time())),
        "X-Webhook-Signature": sign(settings.webhook_key, body),
    }
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    try:
        # The checked address, not the name: nothing resolves it again (DNS rebinding).
        # TLS still verifies the certificate against the name (SNI).
        with httpx.Client(follow_redirects=False, timeout=timeout, trust_env=False) as client:
            request = client.build_request(
                "POST",
                target.connect_url,
                content=body,
                headers=headers,
                extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
            )
            response = client.send(request, stream=True)
            response.close()  # the receiver's body is not read
    except httpx.TimeoutException:
        return None, f"timed out after {timeout:g} s"
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    code = response.status_code
    if 200 <= code < 300:
        return code, None
    if 300 <= code < 400:
        location = response.headers.get("location", "")
        return code, f"HTTP {code}: redirect to {location[:200]!r} not followed"
    return code, f"HTTP {code}"
