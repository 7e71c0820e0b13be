"""Status changes in the database: each one a compare-and-set UPDATE, nowhere else.

`WHERE status IN (...)` makes two processes that race on one job unable to both win: a
cancelled job is never completed, a finished job never re-run. Each move is checked against
the state machine (`app.jobs.states`) before its statement is built.

Every move but a bare heartbeat also stamps `updated_at` (the database's clock) and adds one
to `version`: what the event watcher (`app.jobs.watch`) polls and a stream's event id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from sqlalchemy import Float, Table, Update, bindparam, literal, update
from sqlalchemy.orm import Session

from app.db.clock import db_now
from app.db.json_list import json_append
from app.db.prepared import PreparedStatement
from app.jobs.models import ReportJob
from app.jobs.states import JobStatus, check

# Table-level (Core) statements: a status change is hot-path work, and the ORM's bulk-update
# machinery costs more than the UPDATE itself.
JOBS = cast(Table, ReportJob.__table__)


@dataclass(frozen=True)
class appended:
    """A value that adds `item` to a JSON list column in the UPDATE itself (the history),
    so writers racing on one row each keep their entry (`app.db.json_list`)."""

    item: Any


def transition(
    session: Session,
    job_id: str,
    *,
    source: Iterable[JobStatus],
    target: JobStatus,
    where: Iterable[Any] = (),
    **values: Any,
) -> bool:
    """Move `job_id` from one of `source` to `target` if it is still there; True if it moved.

    `where` adds conditions (e.g. the attempt number the caller owns); `values` sets columns
    (a value may be a SQL expression, e.g. `db_now()` for the database's clock, or
    `appended(item)`).
    """
    result = session.execute(_update(job_id, source, target, where, values))
    return bool(getattr(result, "rowcount", 0) == 1)


def prepare_transition(
    *,
    source: Iterable[JobStatus],
    target: JobStatus,
    where: Iterable[Any] = (),
    values: dict[str, Any],
) -> Update:
    """A checked transition statement with bind parameters, for callers that build it once."""
    return _update(bindparam("p_id"), source, target, where, values)


def _update(
    job_id: Any,
    source: Iterable[JobStatus],
    target: JobStatus,
    where: Iterable[Any],
    values: dict[str, Any],
) -> Update:
    sources = [JobStatus(s) for s in source]
    for s in sources:
        check(s, target)
    values = {
        key: _appended(key, literal(value.item, JOBS.c[key].type))
        if isinstance(value, appended)
        else value
        for key, value in values.items()
    }
    return (
        update(JOBS)
        .where(JOBS.c.id == job_id, _status_in(sources), *where)
        .values(status=str(target), **values, **_stamp(sources, target, values))
    )


HEARTBEAT_ONLY = frozenset({"heartbeat_at"})


def _stamp(sources: Iterable[str], target: str, values: Iterable[str]) -> dict[str, Any]:
    """`updated_at` and `version + 1`, unless the move changes nothing a watcher shows."""
    if set(values) <= HEARTBEAT_ONLY and {str(s) for s in sources} == {str(target)}:
        return {}
    return {"updated_at": db_now(), "version": JOBS.c.version + 1}


def _appended(key: str, item: Any) -> Any:
    return json_append(JOBS.c[key], item)


def _status_in(sources: Iterable[str]) -> Any:
    # One bound constant per status, not an "expanding" IN: a prepared statement is compiled
    # once, before any call supplies values.
    return JOBS.c.status.in_([literal(str(s)) for s in sources])


def owned_transition(
    job_id: str,
    *,
    source: Iterable[JobStatus],
    target: JobStatus,
    attempt: int,
    **values: Any,
) -> bool:
    """`transition` guarded by the attempt the caller owns, committed on its own.

    The hot path (every heartbeat and every job's end): one prepared UPDATE per set of
    columns, run outside any session. Only for writes a crash may lose (`durable=False`).
    A `db_now(...)` value is the database's clock in the statement itself (its offset, if
    any, a bound parameter), so a statement exists per column set and clocked columns.
    """
    shape = tuple((key, _shape(values[key])) for key in sorted(values))
    stmt = _prepared(tuple(str(s) for s in source), str(target), shape)
    params: dict[str, Any] = {"p_id": job_id, "p_attempt": attempt}
    for key, value in values.items():
        if isinstance(value, appended):
            params[f"v_{key}"] = value.item
        elif not isinstance(value, db_now):
            params[f"v_{key}"] = value
        elif value.seconds is not None:
            params[f"s_{key}"] = float(value.seconds)
    return stmt.rowcount(params) == 1


def _shape(value: Any) -> str | None:
    """How a value enters the statement: bound as is (None), a clock, or an append."""
    if isinstance(value, appended):
        return "append"
    if isinstance(value, db_now):
        return "now" if value.seconds is None else "now+"
    return None


def _value(key: str, clock: str | None) -> Any:
    if clock is None:
        return bindparam(f"v_{key}", type_=JOBS.c[key].type)
    if clock == "append":
        return _appended(key, bindparam(f"v_{key}", type_=JOBS.c[key].type))
    return db_now() if clock == "now" else db_now(bindparam(f"s_{key}", type_=Float()))


@cache
def _prepared(
    sources: tuple[str, ...], target: str, shape: tuple[tuple[str, str | None], ...]
) -> PreparedStatement:
    for s in sources:
        check(JobStatus(s), JobStatus(target))
    return PreparedStatement(
        update(JOBS)
        .where(
            JOBS.c.id == bindparam("p_id"),
            _status_in(sources),
            JOBS.c.attempts == bindparam("p_attempt"),
        )
        .values(
            status=target,
            **{key: _value(key, clock) for key, clock in shape},
            **_stamp(sources, target, (key for key, _ in shape)),
        )
    )
