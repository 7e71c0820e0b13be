"""Bulk e-mail: thousands of personalised messages on one SMTP connection, each sent once.

How a send goes:
- recipients are validated and de-duplicated (case-insensitively) up front; the ledger
  (`ledger.py`) says who was already handled by an earlier attempt of this job;
- messages go out on one connection, paced by a token bucket (MAIL_RATE_PER_SECOND), in
  batches of MAIL_BATCH_SIZE: after each batch the ledger is written and progress reported;
- a 5xx for one recipient fails that recipient only; a 4xx defers it; a connection dropped
  before the hand-over is re-opened and the same recipient tried again at once; a message
  whose hand-over was cut off is `unknown` and never resent;
- when the pass ends with deferred recipients, the job raises TransientJobError so the
  runner retries it with backoff, and the retry sends only those; on the last attempt they
  are reported as failed instead, so the job still completes with every outcome listed.
"""

from __future__ import annotations

import smtplib
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from app.core.config import Settings
from app.jobs.errors import PermanentJobError, TransientJobError
from app.notifications import smtp
from app.notifications.email import as_bytes, build_message, message_id, normalise_address
from app.notifications.ledger import DEFERRED, FAILED, SENT, UNKNOWN, Entry, Ledger
from app.notifications.templates import MailTemplate, TemplateProblem

DUPLICATE = "duplicate"
INVALID = "invalid"
SKIPPED = "skipped"
"""Refused before the job (malformed, or not allowed by `policy.py`): never sent."""
MAX_RECONNECTS = 5
"""Drops in a row with no message through: the server is unwell; leave the rest to the
runner's backoff. (Drops between successes are normal: many servers cap messages per
connection.)"""
MAX_CONSECUTIVE_TRANSIENT = 20
"""This many 4xx in a row means the server is throttling us: stop and back off."""


class TokenBucket:
    """Paces sends to `rate` per second, with no burst above one message.

    Smooth pacing rather than bursts: providers throttle bursts, and over any T seconds at
    most rate*T + 1 messages leave. A rate of 0 or less means unlimited.
    """

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self._clock = clock
        self._sleep = sleep
        self._tokens = 1.0
        self._last = clock()

    def acquire(self, on_wait: Callable[[], None] | None = None) -> None:
        """Take one token, sleeping (in short steps that call `on_wait`) until one is free."""
        if self.rate <= 0:
            return
        while True:
            now = self._clock()
            self._tokens = min(1.0, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1.0 - 1e-9:  # float sums of waits land a hair below 1
                self._tokens = max(self._tokens - 1.0, 0.0)
                return
            self._sleep(min((1.0 - self._tokens) / self.rate, 0.5))
            if on_wait is not None:
                on_wait()


@dataclass(frozen=True)
class Recipient:
    email: str
    context: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    email: str
    status: str
    attempt: int | None = None
    code: int | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"email": self.email, "status": self.status}
        for name in ("attempt", "code", "error"):
            value = getattr(self, name)
            if value is not None:
                data[name] = value
        return data


ProgressFn = Callable[[int, int, str], None]


@dataclass
class _Plan:
    outcomes: list[Outcome]
    todo: list[tuple[int, str]]  # (index into recipients, normalised address)


class _Stop(Exception):
    """End this pass early; the rest waits for the runner's retry."""


class _Connection:
    """The pass's one SMTP connection: opened lazily, re-opened after a drop.

    Servers that close a connection after N messages are common, so a drop before the
    hand-over (nothing delivered) is retried at once on a new connection; only
    MAX_RECONNECTS drops in a row, without a message getting through, end the pass.
    """

    def __init__(
        self, settings: Settings, ssl_context: ssl.SSLContext | None, outcomes: list[Outcome]
    ) -> None:
        self.settings = settings
        self.ssl_context = ssl_context
        self.outcomes = outcomes
        self.client: smtplib.SMTP | None = None
        self.drops_in_a_row = 0
        self.last_drop = ""

    def send(
        self, data: bytes, *, sender: str, address: str, before_data: Callable[[], None]
    ) -> None:
        """Deliver to one address or raise SendFailure, or a connect JobError.

        Raises `_Stop` before trying, when the connection keeps dropping: the address was
        then certainly not sent.
        """
        for try_number in (1, 2):
            if self.drops_in_a_row > MAX_RECONNECTS:
                raise _Stop(self.last_drop)
            if self.client is None:
                self.client = _connect(self.settings, self.ssl_context, self.outcomes)
            try:
                smtp.deliver(
                    self.client, data, sender=sender, recipients=[address], before_data=before_data
                )
            except smtp.SendFailure as failure:
                if not failure.connection_lost:
                    raise
                self.close()
                self.drops_in_a_row += 1
                self.last_drop = failure.message
                if failure.ambiguous or try_number == 2:
                    raise
                continue  # nothing was handed over: same recipient, fresh connection
            self.drops_in_a_row = 0
            return

    def close(self) -> None:
        smtp.quit_quietly(self.client)
        self.client = None


def send_bulk(
    *,
    settings: Settings,
    job_id: str,
    attempt: int,
    final_attempt: bool,
    template: MailTemplate,
    recipients: Sequence[Recipient],
    base_context: dict[str, Any] | None = None,
    progress: ProgressFn,
    on_wait: Callable[[], None],
    ssl_context: ssl.SSLContext | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    skipped: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """Send every recipient not yet handled; return the job result with all outcomes.

    `progress(done, total, message)` runs after each batch and may raise (cancellation).
    `skipped` ((address, reason) pairs set aside when the job was accepted) are listed in
    the result as `skipped`, after the others.
    """
    sender = smtp.envelope_sender(settings)
    bucket = TokenBucket(settings.MAIL_RATE_PER_SECOND, clock=clock, sleep=sleep)
    batch_size = max(1, settings.MAIL_BATCH_SIZE)
    total = len(recipients)
    with Ledger.open(settings, job_id, attempt=attempt) as ledger:
        plan = _plan(recipients, ledger.entries)
        already = total - len(plan.todo)
        connection = _Connection(settings, ssl_context, plan.outcomes)
        streak = 0  # 4xx replies in a row
        last_transient = ""
        stopped_at: int | None = None
        try:
            for position, (index, address) in enumerate(plan.todo):
                if position and position % batch_size == 0:
                    ledger.sync()
                    _report(progress, plan.outcomes, already + position, total)
                outcome = plan.outcomes[index]
                try:
                    mail = template.render(
                        {**(base_context or {}), **recipients[index].context, "email": address},
                        check=on_wait,
                    )
                except TemplateProblem as exc:
                    _settle(ledger, outcome, address, FAILED, error=str(exc))
                    continue
                data = as_bytes(
                    build_message(
                        settings=settings,
                        to=[address],
                        mail=mail,
                        msg_id=message_id(settings, job_id, str(index)),
                        headers={"X-Job-Id": job_id},
                    )
                )
                bucket.acquire(on_wait)
                key = address.lower()
                try:
                    connection.send(
                        data, sender=sender, address=address, before_data=partial(ledger.begin, key)
                    )
                except _Stop as stop:
                    last_transient = str(stop)
                    stopped_at = position
                    break
                except smtp.SendFailure as failure:
                    if failure.phase == "sender" and not failure.transient:
                        raise PermanentJobError(
                            f"{failure.message}: set MAIL_FROM (now {settings.MAIL_FROM!r}) "
                            "to an address the server accepts"
                        ) from None
                    status = (
                        UNKNOWN
                        if failure.ambiguous
                        else (DEFERRED if failure.transient else FAILED)
                    )
                    _settle(
                        ledger, outcome, address, status, code=failure.code, error=failure.message
                    )
                    if not failure.transient:
                        streak = 0
                        continue
                    streak += 1
                    last_transient = failure.message
                    if streak >= MAX_CONSECUTIVE_TRANSIENT:
                        stopped_at = position + 1
                        break
                    continue
                streak = 0
                _settle(ledger, outcome, address, SENT)
        finally:
            connection.close()
            ledger.sync()
        _report(progress, plan.outcomes, total, total)
    not_tried = [index for index, _ in plan.todo[stopped_at:]] if stopped_at is not None else []
    deferred = [o for o in plan.outcomes if o.status == DEFERRED]
    if (deferred or not_tried) and not final_attempt:
        counts = _counts(plan.outcomes)
        plural = "s" if len(deferred) != 1 else ""
        raise TransientJobError(
            f"{len(deferred)} recipient{plural} got a temporary SMTP error "
            f"(last: {last_transient})"
            + (f" and {len(not_tried)} were not tried yet" if not_tried else "")
            + f"; {counts[SENT]} of {total} sent so far. Only those will be retried."
        )
    for outcome in deferred:
        outcome.status = FAILED
        outcome.error = f"gave up after {attempt} attempts: {outcome.error}"
    for index in not_tried:
        plan.outcomes[index].status = FAILED
        plan.outcomes[index].error = f"not sent: the server kept failing ({last_transient})"
    refused = [Outcome(email, SKIPPED, error=reason) for email, reason in skipped]
    return _result(plan.outcomes + refused, total=total + len(refused), attempt=attempt)


def _plan(recipients: Sequence[Recipient], done: dict[str, Entry]) -> _Plan:
    outcomes: list[Outcome] = []
    todo: list[tuple[int, str]] = []
    seen: set[str] = set()
    for index, recipient in enumerate(recipients):
        try:
            address = normalise_address(recipient.email)
        except ValueError as exc:
            outcomes.append(Outcome(recipient.email, INVALID, error=str(exc)))
            continue
        key = address.lower()
        if key in seen:
            outcomes.append(Outcome(address, DUPLICATE, error="listed more than once; sent once"))
            continue
        seen.add(key)
        entry = done.get(key)
        if entry is not None and entry.terminal:
            outcomes.append(
                Outcome(
                    address, entry.status, attempt=entry.attempt, code=entry.code, error=entry.error
                )
            )
            continue
        outcomes.append(Outcome(address, "pending"))
        todo.append((index, address))
    return _Plan(outcomes=outcomes, todo=todo)


def _connect(
    settings: Settings, ssl_context: ssl.SSLContext | None, outcomes: list[Outcome]
) -> smtplib.SMTP:
    """Connect, adding how far the send got to a connection error's message."""
    try:
        return smtp.connect(settings, ssl_context=ssl_context)
    except (PermanentJobError, TransientJobError) as exc:
        sent = sum(1 for outcome in outcomes if outcome.status == SENT)
        if not sent:
            raise
        raise type(exc)(
            f"{exc} ({sent} of {len(outcomes)} recipients were sent before this; "
            "they will not be sent again)"
        ) from None


def _settle(
    ledger: Ledger,
    outcome: Outcome,
    address: str,
    status: str,
    *,
    code: int | None = None,
    error: str | None = None,
) -> None:
    entry = ledger.record(address.lower(), status, code=code, error=error)
    outcome.status, outcome.attempt, outcome.code, outcome.error = (
        status,
        entry.attempt,
        code,
        error,
    )


def _counts(outcomes: list[Outcome]) -> dict[str, int]:
    counts = dict.fromkeys(
        (SENT, FAILED, UNKNOWN, DEFERRED, INVALID, DUPLICATE, SKIPPED, "pending"), 0
    )
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts


def _report(progress: ProgressFn, outcomes: list[Outcome], done: int, total: int) -> None:
    counts = _counts(outcomes)
    failed = counts[FAILED] + counts[INVALID]
    progress(
        done, total, f"{counts[SENT]} sent, {failed} failed, {counts[DEFERRED]} deferred of {total}"
    )


def _result(outcomes: list[Outcome], *, total: int, attempt: int) -> dict[str, Any]:
    counts = _counts(outcomes)
    return {
        "total": total,
        "sent": counts[SENT],
        "failed": counts[FAILED],
        "invalid": counts[INVALID],
        "unknown": counts[UNKNOWN],
        "duplicates": counts[DUPLICATE],
        "skipped": counts[SKIPPED],
        "attempts": attempt,
        "recipients": [outcome.as_dict() for outcome in outcomes],
    }
