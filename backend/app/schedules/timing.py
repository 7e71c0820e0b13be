"""When a schedule is due: a five-field cron expression in a time zone, or an interval.

Cron expressions are read by `croniter` (pinned) on the schedule's local wall clock, then
placed in UTC with `zoneinfo`, so `0 8 * * *` in Europe/Paris is 07:00 UTC in winter and
06:00 UTC in summer. A local time that does not exist (the spring-forward hour) runs at the
same clock reading after the change (02:30 -> 03:30); one that occurs twice (fall back) runs
once, the first time. An interval counts from the previous due time, in seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from app.core.errors import InvalidInputError

MIN_INTERVAL_SECONDS = 60
MAX_CATCH_UP_STEPS = 1000


class InvalidSchedule(InvalidInputError):
    """A cron expression, time zone or interval that cannot be used; names the field."""


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(
            f"timezone: unknown time zone {name!r} (an IANA name such as 'Europe/Paris')"
        ) from None


def check_cron(expression: str) -> str:
    expression = " ".join(expression.split())
    if len(expression.split(" ")) != 5 or not croniter.is_valid(expression):
        raise InvalidSchedule(
            f"cron: {expression!r} is not a cron expression of five fields "
            "(minute hour day-of-month month day-of-week, e.g. '0 8 * * 1-5')"
        )
    return expression


def next_after(
    *,
    cron: str | None,
    interval_seconds: int | None,
    timezone: str,
    after: datetime,
    anchor: datetime | None = None,
) -> datetime:
    """The first due time strictly after `after` (UTC). An interval steps from `anchor` (the
    previous due time) when given, else from `after`."""
    if interval_seconds:
        step = timedelta(seconds=interval_seconds)
        if anchor is None or anchor > after:
            return after + step if anchor is None else anchor
        steps = (after - anchor) // step + 1
        return anchor + steps * step
    if not cron:
        raise InvalidSchedule("cron: a schedule needs a cron expression or interval_seconds")
    tz = zone(timezone)
    local = after.astimezone(tz).replace(tzinfo=None)
    times = croniter(cron, local)
    for _ in range(MAX_CATCH_UP_STEPS):
        following: datetime = times.get_next(datetime)
        candidate = following.replace(tzinfo=tz).astimezone(UTC)
        if candidate > after:
            return candidate
    raise InvalidSchedule(f"cron: {cron!r} gives no time after {after.isoformat()}")


def latest_due(
    *,
    cron: str | None,
    interval_seconds: int | None,
    timezone: str,
    first: datetime,
    now: datetime,
) -> tuple[datetime, int]:
    """The last due time at or before `now`, from `first` (the schedule's `next_due_at`), and
    how many earlier due times it stands for: after downtime the missed times collapse into
    one run, keyed by the latest."""
    due, missed = first, 0
    for _ in range(MAX_CATCH_UP_STEPS):
        following = next_after(
            cron=cron,
            interval_seconds=interval_seconds,
            timezone=timezone,
            after=due,
            anchor=due,
        )
        if following > now:
            return due, missed
        due, missed = following, missed + 1
    if interval_seconds:
        step = timedelta(seconds=interval_seconds)
        extra = (now - due) // step
        return due + extra * step, missed + extra
    return due, missed  # over a thousand missed cron times: keyed by the thousandth
