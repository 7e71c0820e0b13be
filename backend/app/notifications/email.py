"""Build one e-mail (text + HTML alternatives, attachments) and send it exactly once.

Message-IDs are derived from the job (not random), so a message that a crash ever made us
send twice carries the same Message-ID both times and threads or deduplicates as one.
"""

from __future__ import annotations

import mimetypes
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.jobs.errors import PermanentJobError, TransientJobError
from app.notifications import smtp
from app.notifications.ledger import DEFERRED, FAILED, SENT, UNKNOWN, Ledger
from app.notifications.templates import RenderedMail

MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
"""Most providers cap a message at 25 MB, and base64 adds a third."""

_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


@dataclass(frozen=True)
class Attachment:
    path: Path
    filename: str
    mime_type: str = "application/octet-stream"


def normalise_address(value: str) -> str:
    """A deliverable `local@domain` (domain lower-cased, IDNA-encoded) or ValueError.

    Deliberately plain: no display names, no quoted local parts, no comments; what a form
    field should contain, and nothing that could smuggle a header or a second recipient.
    """
    address = value.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"{value!r} is not an e-mail address (expected name@domain)")
    if len(local) > 64 or not _LOCAL_PART.match(local):
        raise ValueError(f"{value!r} is not an e-mail address (invalid part before @)")
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"{value!r} is not an e-mail address (invalid domain)") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{value!r} is not an e-mail address (invalid domain)")
    result = f"{local}@{ascii_domain}"
    if len(result) > 254:
        raise ValueError(f"{value!r} is too long for an e-mail address")
    return result


def message_id(settings: Settings, *parts: str) -> str:
    domain = parseaddr(settings.MAIL_FROM)[1].rpartition("@")[2] or "localhost"
    token = ".".join(re.sub(r"[^A-Za-z0-9_-]", "-", part) for part in parts)
    return f"<{token}@{domain}>"


def build_message(
    *,
    settings: Settings,
    to: Sequence[str],
    mail: RenderedMail,
    msg_id: str,
    attachments: Sequence[Attachment] = (),
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    """A MIME message: text/plain, plus text/html as an alternative, plus attachments."""
    msg = EmailMessage()
    msg["From"] = settings.MAIL_FROM
    msg["To"] = ", ".join(to)
    msg["Subject"] = mail.subject or "(no subject)"
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = msg_id
    # RFC 3834: tells auto-responders (vacation replies) not to answer a machine.
    msg["Auto-Submitted"] = "auto-generated"
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(mail.text)
    if mail.html:
        msg.add_alternative(mail.html, subtype="html")
    total = 0
    for item in attachments:
        try:
            data = item.path.read_bytes()
        except FileNotFoundError:
            raise PermanentJobError(
                f"the attachment {item.filename!r} no longer exists (its job may have expired)"
            ) from None
        total += len(data)
        if total > MAX_ATTACHMENT_BYTES:
            raise PermanentJobError(
                f"attachments total {total / 1e6:.1f} MB, more than mail can carry "
                f"({MAX_ATTACHMENT_BYTES / 1e6:.0f} MB): send the download link instead"
            )
        mime = item.mime_type or mimetypes.guess_type(item.filename)[0] or ""
        maintype, _, subtype = mime.partition("/")
        if not maintype or not subtype:
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=item.filename)
    return msg


def as_bytes(msg: EmailMessage) -> bytes:
    """Wire form: CRLF line ends and lines folded for SMTP."""
    return msg.as_bytes(policy=policy.SMTP)


def send_once(
    *,
    settings: Settings,
    job_id: str,
    attempt: int,
    key: str,
    msg: EmailMessage,
    recipients: list[str],
    ssl_context: ssl.SSLContext | None = None,
) -> dict[str, Any]:
    """Send `msg` once per (job, key), however often the job is retried.

    Returns {"status": "sent", "accepted": [...], "refused": {...}}. A retry after success
    returns the recorded outcome without sending; a retry after a crash mid-send fails with
    a message rather than risk a duplicate (see `ledger.py`).
    """
    sender = smtp.envelope_sender(settings)
    with Ledger.open(settings, job_id, attempt=attempt) as ledger:
        previous = ledger.entries.get(key)
        if previous is not None and previous.status == SENT:
            return {
                "status": SENT,
                "already_sent_in_attempt": previous.attempt,
                "accepted": recipients,
                "refused": {},
            }
        if previous is not None and previous.status in (UNKNOWN, FAILED):
            raise PermanentJobError(previous.error or "the message could not be sent")
        client = smtp.connect(settings, ssl_context=ssl_context)
        try:
            refused = smtp.deliver(
                client,
                as_bytes(msg),
                sender=sender,
                recipients=recipients,
                before_data=lambda: ledger.begin(key),
            )
        except smtp.SendFailure as failure:
            if failure.ambiguous:
                ledger.record(key, UNKNOWN, error=failure.message)
                raise PermanentJobError(failure.message) from None
            if failure.transient:
                ledger.record(key, DEFERRED, code=failure.code, error=failure.message)
                raise TransientJobError(failure.message) from None
            ledger.record(key, FAILED, code=failure.code, error=failure.message)
            raise PermanentJobError(_with_hint(failure, settings)) from None
        finally:
            smtp.quit_quietly(client)
        ledger.record(key, SENT)
    accepted = [address for address in recipients if address not in refused]
    return {"status": SENT, "accepted": accepted, "refused": refused}


def _with_hint(failure: smtp.SendFailure, settings: Settings) -> str:
    if failure.phase == "sender":
        return (
            f"{failure.message}: set MAIL_FROM (now {settings.MAIL_FROM!r}) to an address "
            "the server accepts"
        )
    return failure.message
