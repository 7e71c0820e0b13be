"""Bodies of the schedule routes: a heavy report request, when it runs, and how it is delivered."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from app.core.schemas import JsonInt, StrictModel
from app.notifications.email import normalise_address
from app.notifications.schemas import Address
from app.reports.schemas import HeavyReportRequest
from app.schedules.delivery import MAX_RECIPIENTS
from app.schedules.timing import MIN_INTERVAL_SECONDS
from app.webhooks.fields import WEBHOOK_URL_FIELD

MAX_INTERVAL_SECONDS = 366 * 24 * 3600
Delivery = Literal["none", "email", "webhook"]
CRON_FIELD = Field(
    default=None,
    min_length=9,
    max_length=200,
    description="Five fields, read on the schedule's time zone: '0 8 * * 1-5' is 08:00 local "
    "time on weekdays, whatever the daylight-saving offset.",
)
Interval = Annotated[JsonInt, Field(ge=MIN_INTERVAL_SECONDS, le=MAX_INTERVAL_SECONDS)]
INTERVAL_FIELD = Field(
    default=None,
    description="Instead of `cron`: every this many seconds (at least 60), from the first due "
    "time.",
)
TIMEZONE_FIELD = Field(default="UTC", min_length=1, max_length=64, description="IANA name.")
DELIVERY_FIELD: Any = Field(
    default="none",
    description="'email': each report's download link is mailed to the owner (the address "
    "on the owner's user) and to `recipients`, as `notify: email` does for one report; "
    "'webhook': each final job is POSTed to the report's `webhook_url`; 'none': fetch it "
    "yourself.",
)
RECIPIENTS_FIELD: Any = Field(
    default=None,
    max_length=MAX_RECIPIENTS,
    description="With delivery 'email': who else gets each report's link, besides the owner. "
    "Each must be an address the owner may mail (their own, a domain in "
    "MAIL_ALLOWED_DOMAINS; an admin anyone); the daily MAIL_RECIPIENTS_PER_DAY counts them "
    "at each firing.",
)


def _addresses(value: list[str]) -> list[str]:
    """Normalised (a malformed address is a 422 naming `recipients`), duplicates dropped."""
    return list(dict.fromkeys(normalise_address(address) for address in value))


Recipients = Annotated[list[Address], AfterValidator(_addresses)]


class ScheduleCreate(StrictModel):
    """POST /schedules: the report of `POST /reports/heavy`, on a cron expression or an
    interval. Give exactly one of `cron` and `interval_seconds`."""

    name: str = Field(min_length=1, max_length=200)
    report: HeavyReportRequest
    cron: str | None = CRON_FIELD
    interval_seconds: Interval | None = INTERVAL_FIELD
    timezone: str = TIMEZONE_FIELD
    delivery: Delivery = DELIVERY_FIELD
    recipients: Recipients | None = RECIPIENTS_FIELD
    paused: bool = False

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleCreate:
        if (self.cron is None) == (self.interval_seconds is None):
            raise ValueError("give exactly one of cron and interval_seconds")
        return self


class ScheduleUpdate(StrictModel):
    """PATCH /schedules/{id}: the fields given change; a new timing replaces the old one.
    Unpausing clears the failure count and the reason it paused. `recipients` replaces the
    list (a delivery other than 'email' drops it); `webhook_url` null removes it."""

    name: str | None = Field(default=None, min_length=1, max_length=200)
    cron: str | None = CRON_FIELD
    interval_seconds: Interval | None = INTERVAL_FIELD
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
    delivery: Delivery | None = None
    recipients: Recipients | None = RECIPIENTS_FIELD
    webhook_url: str | None = WEBHOOK_URL_FIELD
    paused: bool | None = None

    @model_validator(mode="after")
    def _one_timing(self) -> ScheduleUpdate:
        if self.cron is not None and self.interval_seconds is not None:
            raise ValueError("give at most one of cron and interval_seconds")
        return self


class FiringRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    due_at: datetime
    fired_at: datetime
    missed: int = Field(description="Earlier due times this run stood for (after downtime).")
    manual: bool
    job_id: str | None
    outcome: str | None = Field(description="None while its job is live.")


class ScheduleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    report_type: str
    cron: str | None
    interval_seconds: int | None
    timezone: str
    delivery: Delivery
    recipients: list[str] = Field(description="Mailed besides the owner (delivery 'email').")
    webhook_url: str | None = Field(description="The report's, called whatever the delivery.")
    paused: bool
    paused_reason: str | None
    next_due_at: datetime
    last_fired_at: datetime | None
    last_outcome: str | None
    consecutive_failures: int
    created_at: datetime
    recent_firings: list[FiringRead] = Field(default_factory=list)


class ScheduleList(BaseModel):
    items: list[ScheduleRead]
    total: int
    limit: int
    offset: int


class RunResult(BaseModel):
    """POST /schedules/{id}/run: the job this run created (an ordinary job)."""

    job_id: str | None
    outcome: str | None
