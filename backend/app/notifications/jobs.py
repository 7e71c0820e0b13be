"""Job handlers for the notifications queue, and the heavy-report "notify" hook.

`email` params: `to` (an address or a list), `subject`, `template` or `body` (+ optional
`html_body`), `context`, and `attachments` ([{key, filename, mime_type}]: the storage key of a
finished job's artifact of the caller, resolved by the route; jobs queued before the object
store carry a host `path` instead, still read so they survive the upgrade). `bulk_email`
params: `subject`, `template` or `body`, optional `html_body` and shared `context`, and
`recipients` ([{email, context}]).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.jobs.context import JobContext, JobOutput
from app.jobs.errors import PermanentJobError
from app.notifications.bulk import Recipient, send_bulk
from app.notifications.email import (
    Attachment,
    build_message,
    message_id,
    normalise_address,
    send_once,
)
from app.notifications.templates import MailTemplate, TemplateProblem, compile_template
from app.storage import ObjectMissing, StorageError, StorageUnavailable, get_store, staged

REPORT_READY_TEMPLATE = "report_ready"


def run_email(ctx: JobContext) -> JobOutput:
    """One message to one or a few recipients, with optional attachments."""
    params = ctx.params
    raw_to = params.get("to")
    to_list = [raw_to] if isinstance(raw_to, str) else list(raw_to or [])
    if not to_list:
        raise PermanentJobError("the e-mail has no recipient ('to')")
    try:
        to = [normalise_address(str(address)) for address in to_list]
    except ValueError as exc:
        raise PermanentJobError(str(exc)) from None
    template = _template(params)
    try:
        mail = template.render(dict(params.get("context") or {}), check=ctx.check_cancelled)
    except TemplateProblem as exc:
        raise PermanentJobError(str(exc)) from None
    ctx.progress(10, "building the message")
    with ExitStack() as stack:
        attachments = [
            Attachment(
                stack.enter_context(_attachment_file(ctx, item)),
                str(item["filename"]),
                str(item.get("mime_type") or "application/octet-stream"),
            )
            for item in params.get("attachments") or []
        ]
        msg = build_message(
            settings=ctx.settings,
            to=to,
            mail=mail,
            msg_id=message_id(ctx.settings, ctx.job_id),
            attachments=attachments,
            headers={"X-Job-Id": ctx.job_id},
        )
    ctx.progress(30, "sending")
    outcome = send_once(
        settings=ctx.settings,
        job_id=ctx.job_id,
        attempt=ctx.attempt,
        key="message",
        msg=msg,
        recipients=to,
    )
    ctx.progress(100, "sent")
    return JobOutput(
        result={
            **outcome,
            "subject": mail.subject,
            "message_id": msg["Message-ID"],
            "attachments": [item.filename for item in attachments],
        }
    )


@contextmanager
def _attachment_file(ctx: JobContext, item: dict[str, Any]) -> Iterator[Path]:
    """An attachment as a local file for the length of the block: staged from the store by
    its `key`, or (a job queued before the object store) its host `path` as it is."""
    key = item.get("key")
    if not key:
        yield Path(str(item["path"]))
        return
    try:
        with staged(
            get_store(ctx.settings), str(key), ctx.scratch_dir, prefix=ctx.scratch_prefix
        ) as path:
            yield path
    except ObjectMissing:
        raise PermanentJobError(
            f"the attachment {item.get('filename')!r} no longer exists (its job may have expired)"
        ) from None
    except StorageUnavailable:
        raise  # a ConnectionError: the runner retries the attempt
    except StorageError as exc:
        raise PermanentJobError(f"the attachment cannot be read: {exc}") from exc


def run_bulk_email(ctx: JobContext) -> JobOutput:
    """Personalised messages to many recipients; the result lists each one's outcome."""
    params = ctx.params
    template = _template(params)
    raw = params.get("recipients") or []
    if not isinstance(raw, list) or not raw:
        raise PermanentJobError("the bulk e-mail has no recipients")
    recipients = [
        Recipient(email=str(item.get("email", "")), context=dict(item.get("context") or {}))
        if isinstance(item, dict)
        else Recipient(email=str(item))
        for item in raw
    ]

    def progress(done: int, total: int, message: str) -> None:
        ctx.progress(100 * done / max(total, 1), message)

    result = send_bulk(
        settings=ctx.settings,
        job_id=ctx.job_id,
        attempt=ctx.attempt,
        final_attempt=ctx.attempt >= ctx.settings.max_attempts,
        template=template,
        recipients=recipients,
        base_context=dict(params.get("context") or {}),
        progress=progress,
        on_wait=ctx.check_cancelled,
        skipped=[
            (str(item.get("email", "")), str(item.get("reason", "")))
            for item in params.get("skipped") or []
            if isinstance(item, dict)
        ],
    )
    return JobOutput(result=result)


def report_ready_email_params(
    *, to: str | list[str], job_id: str, download_url: str, title: str
) -> dict[str, Any]:
    """Params of an `email` job announcing a finished report (the queued way to notify)."""
    return {
        "to": to,
        "template": REPORT_READY_TEMPLATE,
        "context": {"title": title, "download_url": download_url, "job_id": job_id},
    }


def notify_report_ready(
    *, settings: Settings, to: str, job_id: str, download_url: str, title: str
) -> dict[str, Any]:
    """Mail the report's owner its download link, now and at most once per report job.

    Raises PermanentJobError/TransientJobError like any send; the caller decides whether a
    failed notice should affect the report (it should not: log it and move on).
    """
    template = _template(
        report_ready_email_params(to=to, job_id=job_id, download_url=download_url, title=title)
    )
    try:
        address = normalise_address(to)
    except ValueError as exc:
        raise PermanentJobError(f"cannot notify the report's owner: {exc}") from None
    mail = template.render({"title": title, "download_url": download_url, "job_id": job_id})
    msg = build_message(
        settings=settings,
        to=[address],
        mail=mail,
        msg_id=message_id(settings, job_id, "report-ready"),
        headers={"X-Job-Id": job_id},
    )
    return send_once(
        settings=settings,
        job_id=job_id,
        attempt=1,
        key="report_ready",
        msg=msg,
        recipients=[address],
    )


def _template(params: dict[str, Any]) -> MailTemplate:
    try:
        return compile_template(
            subject=params.get("subject"),
            template=params.get("template"),
            body=params.get("body"),
            html_body=params.get("html_body"),
        )
    except TemplateProblem as exc:
        raise PermanentJobError(str(exc)) from None
