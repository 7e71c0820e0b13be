"""Live job events for the API's streams: one watcher per API process, whatever runs the jobs.

Every status change and progress step stamps the job row (`updated_at`, the database's
clock, and `version + 1`: `app.jobs.store.transitions`), wherever it happens: an embedded
worker, a Celery or RQ worker on another host, another API process. So the database is the
one channel every deployment already has. The watcher asks it, once per tick and only while
a stream is open, for the rows changed in the last `WINDOW_SECONDS` (one indexed range
query, `ix_report_jobs_updated`), and hands each row whose version it has not handed yet to
the streams that follow that job or its owner. N open streams cost one query per tick, not
N: the count is in `tests/test_job_events.py`.

The window overlaps from tick to tick on purpose: a row is stamped when its statement runs
and becomes visible when its transaction commits, which may be later; versions make a row
seen twice harmless. Changes of one job between two ticks arrive as one event (its latest
state). Redis pub/sub was not used: the embedded deployment has no Redis, and a message
published by a worker before its transaction commits would announce a state the database
does not show yet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from app.db.clock import db_now
from app.db.session import session_scope
from app.jobs.models import ReportJob
from app.jobs.schemas import JobRead
from app.jobs.states import FINAL_STATUSES
from app.users.models import User

log = logging.getLogger(__name__)

TICK_SECONDS = 0.25
"""How often the watcher looks, while any stream is open: the events' added latency."""
WINDOW_SECONDS = 5.0
"""How far back each look reaches (a transaction may commit this long after its stamp)."""
EVERY_OWNER = 0
"""The owner id an admin's stream follows: every user's jobs (no user has id 0)."""
MAX_BACKLOG = 500
"""Events waiting for one stream before it is ended (the client resumes by Last-Event-ID)."""


@dataclass(frozen=True)
class Change:
    """One job's state as the watcher read it."""

    job: JobRead
    owner_id: int
    updated_at: datetime

    @property
    def final(self) -> bool:
        return self.job.status in FINAL_STATUSES


@dataclass(eq=False)
class Subscription:
    """What one stream follows: one job, or every job of one owner.

    Its backlog is bounded: a client that stops reading (its socket full) would otherwise
    make the queue grow with every change it follows. Past `MAX_BACKLOG` the backlog is
    dropped and the stream ends (`None`); the browser reconnects with its Last-Event-ID and
    resumes from the database, so nothing is lost but memory is.
    """

    job_id: str | None = None
    owner_id: int | None = None
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)
    overflowed: bool = False

    def push(self, change: Change) -> None:
        if self.overflowed:
            return
        if self.queue.qsize() >= MAX_BACKLOG:
            self.overflowed = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait(change)


def _changed_rows(window: float, handed: dict[str, int]) -> tuple[dict[str, int], list[Change]]:
    """The one query of a tick: rows stamped in the last `window` seconds, with owner names.

    Every row in the window comes back (its version, for `handed`), but only those with a
    version not handed yet are turned into a `JobRead`: a row stays in the window for
    `WINDOW_SECONDS`, twenty ticks, and validating it each time was the watcher's main cost.
    """
    stmt = (
        select(ReportJob, User.name)
        .join(User, User.id == ReportJob.owner_id)
        .where(ReportJob.updated_at > db_now(-window))
    )
    versions: dict[str, int] = {}
    changes: list[Change] = []
    with session_scope() as session:
        for job, name in session.execute(stmt).tuples():
            versions[job.id] = job.version
            if job.version > handed.get(job.id, 0):
                changes.append(
                    Change(
                        job=JobRead.model_validate(job).model_copy(update={"owner": name}),
                        owner_id=job.owner_id,
                        updated_at=job.updated_at,
                    )
                )
    return versions, changes


class JobWatcher:
    """The process's one poller of the job table, fanning changes out to subscriptions."""

    def __init__(self, tick: float = TICK_SECONDS, window: float = WINDOW_SECONDS) -> None:
        self.tick = tick
        self.window = window
        self.by_job: dict[str, set[Subscription]] = {}
        self.by_owner: dict[int, set[Subscription]] = {}
        self.handed: dict[str, int] = {}
        """The last version handed out per job, for the rows still in the window."""
        self.latest: dict[str, Change] = {}
        """The newest change per job in the window: a job stream opened after the route read
        its row gets what it may have missed meanwhile."""
        self.polls = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def open_streams(self) -> int:
        return sum(map(len, self.by_job.values())) + sum(map(len, self.by_owner.values()))

    def subscribe(self, *, job_id: str | None = None, owner_id: int | None = None) -> Subscription:
        sub = Subscription(job_id=job_id, owner_id=owner_id)
        if job_id is not None:
            self.by_job.setdefault(job_id, set()).add(sub)
            if job_id in self.latest:
                sub.push(self.latest[job_id])
        else:
            assert owner_id is not None
            self.by_owner.setdefault(owner_id, set()).add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="job-watcher")
        self._wake.set()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub.job_id is not None:
            _discard(self.by_job, sub.job_id, sub)
        if sub.owner_id is not None:
            _discard(self.by_owner, sub.owner_id, sub)

    async def _run(self) -> None:
        while True:
            if not self.open_streams:
                self._wake.clear()
                self.handed.clear()  # with no stream open, nothing is owed to anyone
                self.latest.clear()
                await self._wake.wait()
            started = time.monotonic()
            try:
                versions, changes = await asyncio.to_thread(
                    _changed_rows, self.window, dict(self.handed)
                )
                self.polls += 1
                self._fan_out(versions, changes)
            except Exception:  # a database outage: the streams wait, the next tick retries
                log.warning("job watcher: reading changes failed", exc_info=True)
            await asyncio.sleep(max(0.0, self.tick - (time.monotonic() - started)))

    def _fan_out(self, versions: dict[str, int], changes: list[Change]) -> None:
        """Hand each new change to its streams; `versions` is every row in the window."""
        handed = {job_id: max(v, self.handed.get(job_id, 0)) for job_id, v in versions.items()}
        latest = {job_id: self.latest[job_id] for job_id in versions if job_id in self.latest}
        for change in changes:
            job_id, version = change.job.job_id, change.job.version
            handed[job_id] = max(version, handed.get(job_id, 0))
            latest[job_id] = change
            if version <= self.handed.get(job_id, 0):
                continue
            for sub in (
                *self.by_job.get(job_id, ()),
                *self.by_owner.get(change.owner_id, ()),
                *self.by_owner.get(EVERY_OWNER, ()),
            ):
                sub.push(change)
        self.handed, self.latest = handed, latest


def _discard(index: dict[Any, set[Subscription]], key: Any, sub: Subscription) -> None:
    subs = index.get(key)
    if subs is not None:
        subs.discard(sub)
        if not subs:
            del index[key]


_watchers: dict[int, JobWatcher] = {}


def get_watcher() -> JobWatcher:
    """This process's watcher, for the running event loop (a test starts several loops)."""
    loop = asyncio.get_running_loop()
    watcher = _watchers.get(id(loop))
    if watcher is None:
        _watchers.clear()  # an earlier loop is gone with its streams
        watcher = _watchers[id(loop)] = JobWatcher()
    return watcher


@dataclass(frozen=True)
class Event:
    """What a stream sends: `kind` is "status" or "progress"; `final` ends a job's stream."""

    kind: str
    id: str
    job: JobRead
    final: bool


def _kind(change: Change, last_status: str | None) -> str:
    return "status" if change.job.status != last_status else "progress"


async def follow_job(current: JobRead, owner_id: int, last_id: int | None) -> AsyncIterator[Event]:
    """The events of one job from `current` on, ending with its final one.

    `current` is the job as the route read it; a change since then is in the watcher's
    `latest`, given at subscribing. `current` is sent first unless `last_id` (the client's
    Last-Event-ID) says it was; events are ids (versions) above `last_id`, never a repeat."""
    watcher = get_watcher()
    sub = watcher.subscribe(job_id=current.job_id)
    try:
        sent = last_id or 0
        status: str | None = None
        start = Change(job=current, owner_id=owner_id, updated_at=datetime.now(UTC))
        pending: list[Change] = [start]
        while True:
            for change in pending:
                if change.job.version <= sent:
                    status = change.job.status
                    if change.final:
                        return
                    continue
                yield Event(
                    _kind(change, status), str(change.job.version), change.job, change.final
                )
                sent, status = change.job.version, change.job.status
                if change.final:
                    return
            if (arrived := await sub.queue.get()) is None:
                return  # its backlog overflowed: the client resumes by Last-Event-ID
            pending = [arrived]
    finally:
        watcher.unsubscribe(sub)


def stamp_id(moment: datetime) -> str:
    """An owner stream's event id: the change's database time in microseconds."""
    return str(int(moment.timestamp() * 1_000_000))


def _since(last_id: str | None) -> datetime | None:
    if last_id and last_id.isdigit():
        return datetime.fromtimestamp(int(last_id) / 1_000_000, UTC)
    return None


def _owner_rows_since(owner_id: int, since: datetime) -> list[Change]:
    mine = [] if owner_id == EVERY_OWNER else [ReportJob.owner_id == owner_id]
    stmt = (
        select(ReportJob, User.name)
        .join(User, User.id == ReportJob.owner_id)
        .where(*mine, ReportJob.updated_at > since)
        .order_by(ReportJob.updated_at)
    )
    with session_scope() as session:
        return [
            Change(
                job=JobRead.model_validate(job).model_copy(update={"owner": name}),
                owner_id=job.owner_id,
                updated_at=job.updated_at,
            )
            for job, name in session.execute(stmt).tuples()
        ]


async def follow_owner(owner_id: int, last_id: str | None) -> AsyncIterator[Event]:
    """Every change of `owner_id`'s jobs from now on (or since `last_id`, a `stamp_id`),
    each job's versions in order; `EVERY_OWNER` follows everyone's (an admin's console).
    It does not end: the client closes it."""
    watcher = get_watcher()
    sub = watcher.subscribe(owner_id=owner_id)
    try:
        versions: dict[str, tuple[int, str]] = {}
        since = _since(last_id)
        pending = await asyncio.to_thread(_owner_rows_since, owner_id, since) if since else []
        while True:
            for change in pending:
                job = change.job
                seen_version, status = versions.get(job.job_id, (0, None))
                if job.version <= seen_version:
                    continue
                # A job first seen here is a "status" event: its state is news to this stream.
                yield Event(_kind(change, status), stamp_id(change.updated_at), job, change.final)
                if change.final:
                    versions.pop(job.job_id, None)
                else:
                    versions[job.job_id] = (job.version, job.status)
            if (arrived := await sub.queue.get()) is None:
                return  # its backlog overflowed: the client resumes by Last-Event-ID
            pending = [arrived]
    finally:
        watcher.unsubscribe(sub)


def snapshot(job: ReportJob, owner: str | None) -> JobRead:
    """The job as a stream's first event shows it."""
    return JobRead.model_validate(job).model_copy(update={"owner": owner})


def as_json(event: Event) -> dict[str, Any]:
    return event.job.model_dump(mode="json")
