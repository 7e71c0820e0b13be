"""Report schedules of the API: create (checked like `POST /reports/heavy`), read, change,
delete, run now. Only the owner sees a schedule; to anyone else it does not exist."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.errors import NotFoundError
from app.db.clock import db_now
from app.reports.dataset_params import prepare_heavy_params
from app.reports.dataset_store import DatasetNotFound
from app.reports.errors import InvalidReportRequest
from app.schedules import tick, timing
from app.schedules.models import REPORT, Schedule, ScheduleFiring
from app.schedules.schemas import ScheduleCreate, ScheduleRead, ScheduleUpdate
from app.users.models import User

RECENT_FIRINGS = 10


class ScheduleNotFound(NotFoundError):
    pass


def create(*, session: Session, owner: User, body: ScheduleCreate, settings: Settings) -> Schedule:
    cron = timing.check_cron(body.cron) if body.cron is not None else None
    timing.zone(body.timezone)
    _check_delivery(owner, body.delivery)
    request = body.report.model_copy(
        update={"notify": "email" if body.delivery == "email" else body.report.notify}
    )
    try:
        params = prepare_heavy_params(
            session=session, owner=owner, request=request, settings=settings
        )
    except DatasetNotFound as exc:
        raise timing.InvalidSchedule(f"report.dataset.dataset_id: {exc.message}") from None
    except InvalidReportRequest as exc:
        raise timing.InvalidSchedule(f"report: {exc.message}") from None
    from app.webhooks.target import job_params

    params = job_params(params, request.webhook_url, settings)
    now = _now(session)
    row = Schedule(
        name=body.name,
        kind=REPORT,
        owner_id=owner.id,
        cron=cron,
        interval_seconds=body.interval_seconds,
        timezone=body.timezone,
        params={"job_type": request.report_type, "job_params": params},
        paused=body.paused,
        next_due_at=timing.next_after(
            cron=cron, interval_seconds=body.interval_seconds, timezone=body.timezone, after=now
        ),
    )
    session.add(row)
    session.commit()
    return row


def _check_delivery(owner: User, delivery: str) -> None:
    if delivery == "email" and not owner.email:
        raise timing.InvalidSchedule(
            "delivery: 'email' mails the owner, and your user has no address; set it with "
            "`reportctl token create NAME --email you@example.com`"
        )


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


def update(*, session: Session, owner: User, schedule_id: str, body: ScheduleUpdate) -> Schedule:
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
    if body.delivery is not None:
        owner_row = session.get(User, row.owner_id)
        assert owner_row is not None
        _check_delivery(owner_row, body.delivery)
        job_params = dict(row.params.get("job_params") or {})
        if body.delivery == "email":
            job_params["notify"] = "email"
        else:
            job_params.pop("notify", None)
        row.params = {**row.params, "job_params": job_params}
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
    job_params = params.get("job_params") or {}
    return ScheduleRead.model_validate(
        {
            **{key: getattr(row, key) for key in ScheduleRead.model_fields if hasattr(row, key)},
            "report_type": str(params.get("job_type")),
            "delivery": "email" if job_params.get("notify") == "email" else "none",
            "recent_firings": list(firings),
        }
    )
