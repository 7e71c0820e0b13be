"""The console's schedules: the caller's report schedules with their next run and last
outcome, and a page to change, pause, run or delete one.

Every change goes through `app.schedules.store` with the API's bodies (`ScheduleUpdate`),
so a cron expression or time zone the API refuses is refused here with the same message.
"""

from __future__ import annotations

from typing import Annotated, Any, get_args

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from app.api.console.auth import COOKIE_PATH, ConsoleVisitor, PostingVisitor, Visitor
from app.api.console.render import message_of, page
from app.api.deps import SessionDep
from app.api.errors import status_of
from app.api.params import ResourceId
from app.core.config import get_settings
from app.core.errors import DomainError
from app.schedules import store
from app.schedules.schemas import Delivery, ScheduleUpdate

router = APIRouter()
SHOWN = 100


@router.get("/schedules", response_class=HTMLResponse)
def schedule_list(request: Request, session: SessionDep, visitor: ConsoleVisitor) -> Response:
    rows, total = store.list_owned(session=session, owner=visitor.user, limit=SHOWN, offset=0)
    schedules = [store.read(session, row) for row in rows]
    return page(request, "schedules.html", visitor, schedules=schedules, total=total)


def _edit_page(
    request: Request,
    session: Session,
    visitor: Visitor,
    schedule_id: str,
    status_code: int = 200,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    row = store.get_owned(session=session, owner=visitor.user, schedule_id=schedule_id)
    return page(
        request,
        "schedule.html",
        visitor,
        status_code,
        schedule=store.read(session, row),
        deliveries=get_args(Delivery),
        error=error,
        notice=notice,
    )


@router.get("/schedules/{schedule_id}", response_class=HTMLResponse)
def schedule_page(
    request: Request, schedule_id: ResourceId, session: SessionDep, visitor: ConsoleVisitor
) -> Response:
    return _edit_page(request, session, visitor, schedule_id)


def update_of(form: dict[str, str]) -> ScheduleUpdate:
    """The form as a PATCH body: the timing the form chose, everything else as shown (an
    empty webhook URL removes it; recipients, one per line or comma, only for e-mail)."""
    body: dict[str, Any] = {
        "name": form["name"].strip(),
        "timezone": form["timezone"].strip(),
        "paused": form["paused"] == "on",
        "webhook_url": form["webhook_url"].strip() or None,
    }
    if delivery := form["delivery"]:
        body["delivery"] = delivery
    if delivery == "email":
        body["recipients"] = form["recipients"].replace(",", " ").split()
    timing, interval, cron = form["timing"], form["interval_seconds"], form["cron"]
    if timing == "interval":
        text = interval.strip()
        if not text.isdigit():
            raise ValueError(f"interval_seconds: expected a whole number of seconds, got {text!r}")
        body["interval_seconds"] = int(text)
    else:
        body["cron"] = cron.strip()
    return ScheduleUpdate.model_validate(body)


@router.post("/schedules/{schedule_id}")
def change_schedule(
    request: Request,
    schedule_id: ResourceId,
    session: SessionDep,
    visitor: PostingVisitor,
    name: Annotated[str, Form(max_length=200)] = "",
    timing: Annotated[str, Form(max_length=10)] = "cron",
    cron: Annotated[str, Form(max_length=200)] = "",
    interval_seconds: Annotated[str, Form(max_length=20)] = "",
    timezone: Annotated[str, Form(max_length=64)] = "UTC",
    delivery: Annotated[str, Form(max_length=20)] = "",
    recipients: Annotated[str, Form(max_length=5000)] = "",
    webhook_url: Annotated[str, Form(max_length=2000)] = "",
    paused: Annotated[str, Form(max_length=5)] = "",
) -> Response:
    try:
        body = update_of(
            {
                "name": name,
                "timing": timing,
                "cron": cron,
                "interval_seconds": interval_seconds,
                "timezone": timezone,
                "delivery": delivery,
                "recipients": recipients,
                "webhook_url": webhook_url,
                "paused": paused,
            }
        )
        store.update(session=session, owner=visitor.user, schedule_id=schedule_id, body=body)
    except ValueError as exc:  # pydantic's ValidationError is one
        session.rollback()
        return _edit_page(request, session, visitor, schedule_id, 422, message_of(exc))
    except DomainError as exc:
        session.rollback()
        return _edit_page(request, session, visitor, schedule_id, status_of(exc), exc.message)
    return _edit_page(request, session, visitor, schedule_id, notice="Saved.")


@router.post("/schedules/{schedule_id}/run")
def run_schedule(
    request: Request, schedule_id: ResourceId, session: SessionDep, visitor: PostingVisitor
) -> Response:
    """Run now, as `POST /schedules/{id}/run`: then the job it made."""
    fired = store.run_now(
        session=session, owner=visitor.user, schedule_id=schedule_id, settings=get_settings()
    )
    if fired is None or fired.job_id is None:
        why = fired.outcome if fired else "another run of this schedule took this moment"
        return _edit_page(request, session, visitor, schedule_id, 409, f"Not run: {why}")
    return RedirectResponse(f"{COOKIE_PATH}/jobs/{fired.job_id}", status_code=303)


@router.post("/schedules/{schedule_id}/delete")
def delete_schedule(
    schedule_id: ResourceId, session: SessionDep, visitor: PostingVisitor
) -> Response:
    store.delete(session=session, owner=visitor.user, schedule_id=schedule_id)
    return RedirectResponse(f"{COOKIE_PATH}/schedules", status_code=303)
