"""Report schedules of the API: create (checked like `POST /reports/heavy`, and its delivery
by `delivery.check`), read, change, delete, run now. Only the owner sees a schedule; to
anyone else it does not exist."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.config import Settings, get_settings
from app.core.errors import NotFoundError
from app.db.clock import db_now
from app.reports.dataset_params import prepare_heavy_params
from app.reports.dataset_store import DatasetNotFound
from app.reports.errors import InvalidReportRequest
from app.schedules import delivery, tick, timing
from app.schedules.models import REPORT, Schedule, ScheduleFiring
from app.schedules.schemas import ScheduleCreate, ScheduleRead, ScheduleUpdate
from app.users.models import User
from app.webhooks.target import InvalidWebhookTarget, job_params

RECENT_FIRINGS = 10


class ScheduleNotFound(NotFoundError):
    pass


def create(*, session: Session, owner: User, body: ScheduleCreate, settings: Settings) -> Schedule:
    cron = timing.check_cron(body.cron) if body.cron is not None else None
    timing.zone(body.timezone)
    mode = body.delivery
    if mode == "none" and body.report.notify == "email":
        mode = "email"  # the report's own `notify` asks for mail
    elif mode == "webhook" and body.report.notify == "email":
        raise timing.InvalidSchedule(
            "report.notify: delivery 'webhook' sends no mail; choose delivery 'email' (the "
            "report's webhook_url is called as well), or leave notify out"
        )
    wanted = delivery.check(
        delivery.Delivery(mode, body.recipients or [], body.report.webhook_url),
        owner=owner,
        settings=settings,
    )
    request = body.report.model_copy(update={"notify": None, "webhook_url": None})
    try:
        params = prepare_heavy_params(
            session=session, owner=owner, request=request, settings=settings
        )
    except DatasetNotFound as exc:
        raise timing.InvalidSchedule(f"report.dataset.dataset_id: {exc.message}") from None
    except InvalidReportRequest as exc:
        raise timing.InvalidSchedule(f"report: {exc.message}") from None
    params = _with_webhook(params, wanted.webhook_url, settings, field="report.webhook_url")
    now = _now(session)
    row = Schedule(
        name=body.name,
        kind=REPORT,
        owner_id=owner.id,
        cron=cron,
        interval_seconds=body.interval_seconds,
        timezone=body.timezone,
        params=delivery.store({"job_type": request.report_type, "job_params": params}, wanted),
        paused=body.paused,
        next_due_at=timing.next_after(
            cron=cron, interval_seconds=body.interval_seconds, timezone=body.timezone, after=now
        ),
    )
    session.add(row)
    session.commit()
    return row


def _with_webhook(
    params: dict[str, Any], url: str | None, settings: Settings, *, field: str
) -> dict[str, Any]:
    """Job params with the checked `webhook_url` (SSRF), its refusal naming `field`."""
    params = {k: v for k, v in params.items() if k != "webhook_url"}
    try:
        return job_params(params, url, settings)
    except InvalidWebhookTarget as exc:
        reason = exc.message.removeprefix("webhook_url: ")
        raise timing.InvalidSchedule(f"{field}: {reason}") from None


def _now(session: Session) -> datetime:
    now: datetime | None = session.scalar(select(db_now()))
    assert now is not None
    return now


def get_owned(*, session: Session, owner: User, schedule_id: str) -> Schedule:
    row = session.get(Schedule, schedule_id)
    if row is None or row.kind != REPORT or row.owner_id != owner.id:
        raise ScheduleNotFound(f"no schedule with id {schedule_id!r} for this token")
    return row


def list_owned(
    *, session: Session, owner: User, limit: int, offset: int
) -> tuple[list[Schedule], int]:
    mine = (Schedule.owner_id == owner.id, Schedule.kind == REPORT)
    total = session.scalar(select(func.count()).select_from(Schedule).where(*mine)) or 0
    rows = session.scalars(
        select(Schedule)
        .where(*mine)
        .order_by(Schedule.created_at.desc(), Schedule.id)
        .limit(limit)
        .offset(offset)
    ).all()
    return list(rows), int(total)


def update(
    *,
    session: Session,
    owner: User,
    schedule_id: str,
    body: ScheduleUpdate,
    settings: Settings | None = None,
) -> Schedule:
    row = get_owned(session=session, owner=owner, schedule_id=schedule_id)
    given = body.model_fields_set
    if "name" in given and body.name is not None:
        row.name = body.name
    retime = False
    if body.cron is not None:
        row.cron, row.interval_seconds, retime = timing.check_cron(body.cron), None, True
    elif body.interval_seconds is not None:
        row.cron, row.interval_seconds, retime = None, body.interval_seconds, True
    if body.timezone is not None:
        timing.zone(body.timezone)
        row.timezone, retime = body.timezone, True
    if given & {"delivery", "recipients", "webhook_url"}:
        row.params = _redeliver(row.params, body, owner=owner, settings=settings or get_settings())
    if body.paused is not None and body.paused != row.paused:
        row.paused, retime = body.paused, retime or not body.paused
        if not body.paused:
            row.paused_reason, row.consecutive_failures = None, 0
    if retime:  # from now: a resumed schedule does not catch up on its paused times
        row.next_due_at = timing.next_after(
            cron=row.cron,
            interval_seconds=row.interval_seconds,
            timezone=row.timezone,
            after=_now(session),
        )
    session.commit()
    return row


def _redeliver(
    params: dict[str, Any], body: ScheduleUpdate, *, owner: User, settings: Settings
) -> dict[str, Any]:
    """The params with the delivery PATCH asks for, checked as at creation."""
    current = delivery.of(params)
    mode = body.delivery if body.delivery is not None else current.mode
    if body.recipients is not None:
        recipients = body.recipients
    else:  # kept while the delivery mails, dropped with it
        recipients = current.recipients if mode == "email" else []
    given = body.model_fields_set
    url = body.webhook_url if "webhook_url" in given else current.webhook_url
    wanted = delivery.check(
        delivery.Delivery(mode, recipients, url),
        owner=owner,
        settings=settings,
        url_field="webhook_url",
    )
    job_params = dict(params.get("job_params") or {})
    if "webhook_url" in given:
        job_params = _with_webhook(job_params, url, settings, field="webhook_url")
    return delivery.store({**params, "job_params": job_params}, wanted)


def delete(*, session: Session, owner: User, schedule_id: str) -> None:
    row = get_owned(session=session, owner=owner, schedule_id=schedule_id)
    session.delete(row)  # its firings go with it; its jobs stay, ordinary jobs
    session.commit()


def run_now(
    *, session: Session, owner: User, schedule_id: str, settings: Settings
) -> tick.Fired | None:
    row = get_owned(session=session, owner=owner, schedule_id=schedule_id)
    schedule_id = row.id
    now = _now(session)
    session.rollback()  # the firing has its own transaction
    return tick.fire(settings, schedule_id, now, manual=True)


def read(session: Session, row: Schedule) -> ScheduleRead:
    firings = session.scalars(
        select(ScheduleFiring)
        .where(ScheduleFiring.schedule_id == row.id)
        .order_by(ScheduleFiring.fired_at.desc())
        .limit(RECENT_FIRINGS)
    ).all()
    params: dict[str, Any] = row.params
    delivered = delivery.of(params)
    return ScheduleRead.model_validate(
        {
            **{key: getattr(row, key) for key in ScheduleRead.model_fields if hasattr(row, key)},
            "report_type": str(params.get("job_type")),
            "delivery": delivered.mode,
            "recipients": delivered.recipients,
            "webhook_url": delivered.webhook_url,
            "recent_firings": list(firings),
        }
    )
