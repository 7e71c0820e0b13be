"""SMTP connections from Settings, and one message's transaction with honest error classes.

Every failure is sorted into what a caller can act on:
- a setting is wrong (no host, unknown host, TLS mismatch, bad credentials): permanent, and
  the message names the setting to fix;
- the server is unreachable or busy (refused, timeout, reset, 4xx replies): transient;
- the server refused this message or recipient (5xx): permanent for that recipient;
- the connection died after the message was handed over: *ambiguous*, the server may have
  accepted it, so the caller must not blindly resend (see `bulk.py`).
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
from collections.abc import Callable
from email.utils import parseaddr

from app.core.config import Settings
from app.jobs.errors import PermanentJobError, TransientJobError


class SendFailure(Exception):
    """One message was not (or maybe not) delivered.

    `phase`: "connection", "sender", "recipient" or "data", where it went wrong.
    `ambiguous`: the server may have accepted it, so resending risks a duplicate.
    `connection_lost`: the connection is unusable; reconnect before the next message.
    """

    def __init__(
        self,
        message: str,
        *,
        phase: str,
        code: int | None = None,
        transient: bool = False,
        ambiguous: bool = False,
        connection_lost: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.phase = phase
        self.code = code
        self.transient = transient
        self.ambiguous = ambiguous
        self.connection_lost = connection_lost


def server_name(settings: Settings) -> str:
    return f"{settings.SMTP_HOST}:{settings.SMTP_PORT}"


def envelope_sender(settings: Settings) -> str:
    """The bare address of MAIL_FROM, which may be written as `Name <addr>`."""
    address = parseaddr(settings.MAIL_FROM)[1]
    if not address or "@" not in address:
        raise PermanentJobError(
            f"MAIL_FROM={settings.MAIL_FROM!r} is not an e-mail address: set MAIL_FROM, "
            "e.g. 'Reports <reports@example.com>'"
        )
    return address


def connect(settings: Settings, *, ssl_context: ssl.SSLContext | None = None) -> smtplib.SMTP:
    """An authenticated connection ready for MAIL FROM, or a JobError that says what to fix.

    `ssl_context` defaults to the system trust store; tests pass one that trusts their
    self-signed certificate.
    """
    host, port, timeout = settings.SMTP_HOST, settings.SMTP_PORT, settings.SMTP_TIMEOUT_SECONDS
    where = server_name(settings)
    if not host:
        raise PermanentJobError(
            "no SMTP server is configured: set SMTP_HOST (and SMTP_PORT, SMTP_SECURITY, "
            "SMTP_USER/SMTP_PASSWORD when the server needs them)"
        )
    context = ssl_context or ssl.create_default_context()
    client: smtplib.SMTP | None = None
    try:
        if settings.SMTP_SECURITY == "tls":
            client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        client.ehlo()
        if settings.SMTP_SECURITY == "starttls":
            if not client.has_extn("starttls"):
                raise PermanentJobError(
                    f"SMTP server {where} does not offer STARTTLS: set SMTP_SECURITY=none, "
                    "or tls if the port expects TLS from the start (usually 465)"
                )
            client.starttls(context=context)
            client.ehlo()
        if settings.SMTP_USER:
            client.login(settings.SMTP_USER, settings.SMTP_PASSWORD.get_secret_value())
        return client
    except PermanentJobError:
        _close(client)
        raise
    except socket.gaierror as exc:
        raise PermanentJobError(
            f"cannot reach SMTP server {where}: unknown host ({exc.strerror}); "
            "set SMTP_HOST/SMTP_PORT"
        ) from None
    except ssl.SSLCertVerificationError as exc:
        _close(client)
        raise PermanentJobError(
            f"the TLS certificate of SMTP server {where} was rejected ({exc.verify_message}): "
            "set SMTP_HOST to the name on the certificate, or install the issuing CA"
        ) from None
    except ssl.SSLError as exc:
        _close(client)
        raise PermanentJobError(
            f"TLS with SMTP server {where} failed ({exc.reason or exc}): check SMTP_SECURITY "
            "(tls for implicit TLS, usually port 465; starttls, usually port 587)"
        ) from None
    except smtplib.SMTPAuthenticationError as exc:
        _close(client)
        raise PermanentJobError(
            f"SMTP server {where} rejected the login of SMTP_USER={settings.SMTP_USER!r} "
            f"({_reply_text(exc.smtp_code, exc.smtp_error)}): check SMTP_USER/SMTP_PASSWORD"
        ) from None
    except smtplib.SMTPNotSupportedError:
        _close(client)
        raise PermanentJobError(
            f"SMTP server {where} does not accept logins on this connection: unset SMTP_USER, "
            "or set SMTP_SECURITY=starttls/tls (most servers allow AUTH only over TLS)"
        ) from None
    except smtplib.SMTPResponseException as exc:
        _close(client)
        text = _reply_text(exc.smtp_code, exc.smtp_error)
        if 400 <= exc.smtp_code < 500:
            raise TransientJobError(f"SMTP server {where} is busy: {text}") from None
        raise PermanentJobError(f"SMTP server {where} refused the session: {text}") from None
    except (TimeoutError, smtplib.SMTPServerDisconnected) as exc:
        _close(client)
        hint = (
            ""
            if settings.SMTP_SECURITY == "tls"
            else ("; if the port expects TLS from the start (usually 465), set SMTP_SECURITY=tls")
        )
        raise TransientJobError(
            f"cannot reach SMTP server {where}: no answer within {timeout:g} s "
            f"({exc or 'timed out'}){hint}; check that it runs, or set SMTP_HOST/SMTP_PORT"
        ) from None
    except OSError as exc:
        _close(client)
        raise TransientJobError(
            f"cannot reach SMTP server {where}: {exc.strerror or exc}; check that it runs, "
            "or set SMTP_HOST/SMTP_PORT"
        ) from None


def deliver(
    client: smtplib.SMTP,
    data: bytes,
    *,
    sender: str,
    recipients: list[str],
    before_data: Callable[[], None] | None = None,
) -> dict[str, str]:
    """Run one MAIL/RCPT/DATA transaction; return the refused recipients (address: reply).

    Raises `SendFailure` when nobody got the message. The phases are driven one by one
    (not `sendmail`) so that a dead connection before DATA is known to be harmless, and one
    during DATA is reported as ambiguous. `before_data` runs once the recipients are
    accepted, just before the message is handed over (the ledger's "sending" mark).
    """
    if not recipients:
        raise ValueError("deliver() needs at least one recipient")
    refused: dict[str, str] = {}
    last: tuple[int, bytes] = (0, b"")
    try:
        code, reply = client.mail(sender)
        if code != 250:
            _reset(client)
            raise _reply_failure(code, reply, "sender")
        for address in recipients:
            code, reply = client.rcpt(address)
            if code not in (250, 251):
                refused[address] = _reply_text(code, reply)
                last = (code, reply)
        if len(refused) == len(recipients):
            _reset(client)
            raise _reply_failure(last[0], last[1], "recipient")
    except SendFailure:
        raise
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        # Nothing was handed over yet: safe to retry on a new connection.
        raise SendFailure(
            f"connection lost before the message was sent: {exc}",
            phase="connection",
            transient=True,
            connection_lost=True,
        ) from None
    if before_data is not None:
        before_data()
    try:
        code, reply = client.data(data)
    except smtplib.SMTPDataError as exc:
        # The server refused the DATA command itself, before any content was sent.
        _reset(client)
        raise _reply_failure(exc.smtp_code, exc.smtp_error, "data") from None
    except (smtplib.SMTPServerDisconnected, OSError) as exc:
        raise SendFailure(
            f"connection lost while the message was being handed over ({exc}); the server "
            "may have accepted it, so it is not sent again",
            phase="data",
            ambiguous=True,
            connection_lost=True,
        ) from None
    if code != 250:
        _reset(client)
        raise _reply_failure(code, reply, "data")
    return refused


def quit_quietly(client: smtplib.SMTP | None) -> None:
    """Say goodbye if the connection still works; never raise (used in `finally`)."""
    if client is None:
        return
    try:
        client.quit()
    except (smtplib.SMTPException, OSError):
        _close(client)


_WHAT = {"sender": "the sender (MAIL FROM)", "recipient": "the recipient", "data": "the message"}


def _reply_failure(code: int, reply: bytes | str, phase: str) -> SendFailure:
    text = _reply_text(code, reply)
    # 421 means the server is closing the channel: transient, and the connection is gone.
    # -1 is smtplib's code for a reply it could not parse: treat the channel as broken.
    return SendFailure(
        f"the SMTP server refused {_WHAT[phase]}: {text}",
        phase=phase,
        code=code,
        transient=400 <= code < 500 or code == -1,
        connection_lost=code in (421, -1),
    )


def _reply_text(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {' '.join(text.split())}"


def _reset(client: smtplib.SMTP) -> None:
    with contextlib.suppress(smtplib.SMTPException, OSError):
        client.rset()


def _close(client: smtplib.SMTP | None) -> None:
    if client is not None:
        with contextlib.suppress(OSError):
            client.close()
