"""The daily statistics report: what ran on a day, how long it took, and what failed.

Computed from the `report_jobs` table (the source of truth, whatever backend ran the jobs)
for the jobs *created* on one UTC day, stored in `daily_stats` (one row per day, recomputing
replaces it), and optionally mailed to the admins once.

Durations are those of each job's last attempt (`finished_at - started_at`) over completed
jobs; percentiles interpolate linearly between ranks (numpy's default).
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.db.base import utcnow
from app.jobs.models import ReportJob
from app.monitoring.models import DailyStats

log = logging.getLogger(__name__)

Send = Callable[[list[str], str, str], None]
"""send(to, subject, text): deliver one plain-text message to these addresses."""

TOP_FAILURES = 10
_ID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|\b[0-9a-fA-F]{16,}\b"
)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _summary(durations: list[float]) -> dict[str, Any]:
    if not durations:
        return {"count": 0, "p50": None, "p95": None, "mean": None, "max": None}
    return {
        "count": len(durations),
        "p50": percentile(durations, 50),
        "p95": percentile(durations, 95),
        "mean": sum(durations) / len(durations),
        "max": max(durations),
    }


def error_key(error: str | None) -> str:
    """Group failures by message, with job ids and hashes masked (they differ per job)."""
    text = " ".join((error or "unknown error").split())
    return _ID.sub("<id>", text)[:300]


def day_window(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def compute_daily_stats(*, session: Session, day: date) -> dict[str, Any]:
    """The report for jobs created on `day` (UTC)."""
    start, end = day_window(day)
    rows = session.execute(
        select(
            ReportJob.job_type,
            ReportJob.status,
            ReportJob.attempts,
            ReportJob.started_at,
            ReportJob.finished_at,
            ReportJob.error,
        ).where(ReportJob.created_at >= start, ReportJob.created_at < end)
    ).all()
    by_status: Counter[str] = Counter()
    by_type: dict[str, Counter[str]] = defaultdict(Counter)
    durations: dict[str, list[float]] = defaultdict(list)
    failures: dict[str, dict[str, Any]] = {}
    retried_jobs = extra_attempts = 0
    for job_type, status, attempts, started_at, finished_at, error in rows:
        by_status[status] += 1
        by_type[job_type][status] += 1
        if attempts and attempts > 1:
            retried_jobs += 1
            extra_attempts += attempts - 1
        if status == "completed" and started_at and finished_at:
            durations[job_type].append(max((finished_at - started_at).total_seconds(), 0.0))
        if status == "failed":
            key = error_key(error)
            entry = failures.setdefault(
                key, {"error": key, "count": 0, "example": error, "job_types": Counter()}
            )
            entry["count"] += 1
            entry["job_types"][job_type] += 1
    all_durations = [value for values in durations.values() for value in values]
    top = sorted(failures.values(), key=lambda item: (-item["count"], item["error"]))
    return {
        "day": day.isoformat(),
        "window": {"start": start.isoformat(), "end": end.isoformat()},
        "total": len(rows),
        "by_status": dict(sorted(by_status.items())),
        "by_type": {
            job_type: {
                "total": sum(counts.values()),
                "by_status": dict(sorted(counts.items())),
                "duration_seconds": _summary(durations.get(job_type, [])),
            }
            for job_type, counts in sorted(by_type.items())
        },
        "duration_seconds": _summary(all_durations),
        "retries": {"retried_jobs": retried_jobs, "extra_attempts": extra_attempts},
        "failures": [
            {**entry, "job_types": dict(sorted(entry["job_types"].items()))}
            for entry in top[:TOP_FAILURES]
        ],
        "distinct_failures": len(failures),
    }


def store_daily_stats(*, session: Session, day: date, stats: dict[str, Any]) -> DailyStats:
    """Insert or replace the day's row (two concurrent runs: the later one wins)."""
    by_status = stats.get("by_status", {})
    values = {
        "total_jobs": int(stats.get("total", 0)),
        "completed": int(by_status.get("completed", 0)),
        "failed": int(by_status.get("failed", 0)),
        "cancelled": int(by_status.get("cancelled", 0)),
        "stats": stats,
        "computed_at": utcnow(),
    }
    for _ in range(2):
        row = session.get(DailyStats, day)
        if row is not None:
            for name, value in values.items():
                setattr(row, name, value)
            session.flush()
            return row
        try:
            with session.begin_nested():
                row = DailyStats(day=day, **values)
                session.add(row)
            return row
        except IntegrityError:
            continue  # another run inserted it meanwhile: update theirs
    raise RuntimeError(f"could not store the statistics of {day}")  # pragma: no cover


def get_daily_stats(*, session: Session, day: date) -> DailyStats | None:
    return session.get(DailyStats, day)


def format_report(stats: dict[str, Any]) -> tuple[str, str]:
    """Subject and plain-text body of the mail."""
    by_status = stats["by_status"]
    subject = (
        f"Report jobs {stats['day']}: {stats['total']} jobs, "
        f"{by_status.get('completed', 0)} completed, {by_status.get('failed', 0)} failed"
    )

    def seconds(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f} s"

    lines = [f"Jobs created on {stats['day']} (UTC): {stats['total']}", ""]
    lines.append(
        "By status: "
        + (", ".join(f"{name}={count}" for name, count in by_status.items()) or "none")
    )
    overall = stats["duration_seconds"]
    lines.append(
        f"Durations (completed): p50 {seconds(overall['p50'])}, "
        f"p95 {seconds(overall['p95'])}, max {seconds(overall['max'])}"
    )
    retries = stats["retries"]
    lines.append(
        f"Retried jobs: {retries['retried_jobs']} ({retries['extra_attempts']} extra attempts)"
    )
    lines += ["", "By type:"]
    for job_type, entry in stats["by_type"].items():
        counts = ", ".join(f"{name}={count}" for name, count in entry["by_status"].items())
        durations = entry["duration_seconds"]
        lines.append(
            f"  {job_type}: {entry['total']} ({counts}); "
            f"p50 {seconds(durations['p50'])}, p95 {seconds(durations['p95'])}"
        )
    if stats["failures"]:
        lines += ["", "Top failures:"]
        for failure in stats["failures"]:
            types = ", ".join(failure["job_types"])
            lines.append(f"  {failure['count']} x [{types}] {failure['error']}")
    return subject, "\n".join(lines) + "\n"


def smtp_sender(settings: Settings) -> Send:
    """A `send` that mails through the configured SMTP server (app.notifications)."""
    from app.notifications import smtp
    from app.notifications.email import as_bytes, build_message, message_id
    from app.notifications.templates import RenderedMail

    def send(to: list[str], subject: str, text: str) -> None:
        msg = build_message(
            settings=settings,
            to=to,
            mail=RenderedMail(subject=subject, text=text),
            # Derived from the content: a resent report threads as the same message.
            msg_id=message_id(
                settings, "daily-stats", hashlib.sha256((subject + text).encode()).hexdigest()[:20]
            ),
        )
        client = smtp.connect(settings)
        try:
            smtp.deliver(
                client, as_bytes(msg), sender=smtp.envelope_sender(settings), recipients=list(to)
            )
        finally:
            smtp.quit_quietly(client)

    return send


def run_daily_report(
    *,
    settings: Settings,
    day: date | None = None,
    send: Send | None = None,
    force_mail: bool = False,
) -> dict[str, Any]:
    """Compute, store and (once per day) mail the report; the periodic task calls this.

    `day` defaults to yesterday (UTC): the task runs just after midnight, on a full day.
    Mail goes to ADMIN_EMAILS through `send`, or through SMTP when SMTP_HOST is set; a mail
    failure is logged and reported, never loses the stored numbers.
    """
    from app.db.session import session_scope

    day = day or (utcnow().date() - timedelta(days=1))
    with session_scope() as session:
        stats = compute_daily_stats(session=session, day=day)
        row = store_daily_stats(session=session, day=day, stats=stats)
        already_mailed = row.mailed_at is not None
    result: dict[str, Any] = {
        "day": day.isoformat(),
        "stats": stats,
        "mailed_to": [],
        "mail_error": None,
    }
    recipients = list(settings.ADMIN_EMAILS)
    if send is None and settings.SMTP_HOST:
        send = smtp_sender(settings)
    if not recipients or send is None or (already_mailed and not force_mail):
        return result
    subject, text = format_report(stats)
    try:
        send(recipients, subject, text)
    except Exception as exc:
        log.warning("daily report of %s not mailed: %s", day, exc)
        result["mail_error"] = f"{type(exc).__name__}: {exc}"
        return result
    with session_scope() as session:
        stored = session.get(DailyStats, day)
        if stored is not None:
            stored.mailed_at = utcnow()
    result["mailed_to"] = recipients
    return result
