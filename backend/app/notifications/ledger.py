"""A durable per-job record of which recipients were sent, so a retried job never resends.

It lives in the database (`models.MailDelivery`), not on the worker's disk: a retry that
lands on another host must see the marks of the first attempt.

The crash-window choice (at most once): before handing a message over (DATA) a `sending`
mark is committed. If the job is retried and a recipient is still `sending`, the worker
died while the server may have been accepting it; the retry records it as `unknown` and
does **not** resend it. A missed mail can be re-requested by a person who sees `unknown`; a
duplicate cannot be taken back. Deterministic Message-IDs (see `email.py`) let mail systems
that deduplicate collapse a duplicate if one ever slips through.

One committed transaction per `begin` is the price of that choice. Every other mark is kept
in memory and written with the next `begin`'s transaction (no extra commit) or by `sync()`
/ `close()`; a mark lost to a crash turns a `sent` into an `unknown`, never into a resend.

Two workers on one job (a redelivered task racing the original, or a takeover):
- the job's lease row (key `LEASE_KEY`) says which attempt may send. `open` takes it when it
  is free or held by an older attempt (the runner only starts a newer attempt once the
  older one's heartbeat went stale, so the holder is presumed dead); otherwise it raises
  TransientJobError and the runner retries later. Unlike the `flock` this replaced, a lease
  outlives a crash, so only a newer attempt (or the same attempt, after `close`) gets it;
- every write first checks, in the same transaction, that the lease is still this
  attempt's: a worker that was taken over stops at its next `begin` instead of sending;
- the claim of a recipient itself is an INSERT guarded by the primary key (job, recipient)
  or a compare-and-set UPDATE on the status last seen, so no two attempts can both mark
  the same recipient `sending`, whatever happened to the lease.

Upgrading from the file ledger (`<storage root>/ledgers/<job>.jsonl`): those files are not
imported. A job in flight at the upgrade may resend to recipients whose mark was only in
the file; the old files can be deleted once the jobs of that time are finished.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    Update,
    bindparam,
    column,
    insert,
    select,
    table,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from app.core.config import Settings
from app.db.base import utcnow
from app.db.session import get_engine
from app.jobs.errors import PermanentJobError, TransientJobError
from app.notifications.models import LEASE_KEY, MailDelivery

log = logging.getLogger(__name__)

SENDING = "sending"
SENT = "sent"
FAILED = "failed"
DEFERRED = "deferred"
UNKNOWN = "unknown"
TERMINAL = frozenset({SENT, FAILED, UNKNOWN})
HELD = "held"
FREE = "free"

CRASHED_WHILE_SENDING = (
    "the worker stopped while this message was being handed to the SMTP server; it may have "
    "been delivered, so it is not sent again"
)
MAX_ERROR = 500

T = cast(Table, MailDelivery.__table__)  # Core statements: one per mark, no ORM overhead


@dataclass(frozen=True)
class Entry:
    """The last thing recorded about one recipient."""

    status: str
    attempt: int
    code: int | None = None
    error: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def _busy(job_id: str) -> TransientJobError:
    return TransientJobError(
        f"job {job_id} is already being sent by another worker; it will be retried"
    )


@contextmanager
def _database(job_id: str) -> Iterator[None]:
    """A database that cannot be reached is a reason to retry: a message whose `sending`
    mark is not committed was not handed over, and one whose mark is will not be resent."""
    try:
        yield
    except OperationalError as exc:
        raise TransientJobError(
            f"the mail ledger of job {job_id} is unreachable ({exc.orig}); the job will be "
            "retried without resending what it began to send"
        ) from None


class Ledger:
    """Open with `Ledger.open(settings, job_id, attempt=...)` as a context manager."""

    def __init__(self, engine: Engine, job_id: str, attempt: int, entries: dict[str, Entry]):
        self._engine = engine
        self.job_id = job_id
        self.attempt = attempt
        self.entries = entries
        self._stored = set(entries)  # keys that have a row
        self._pending: dict[str, Entry] = {}  # recorded, not yet written
        self._open = True

    @classmethod
    def open(cls, settings: Settings, job_id: str, *, attempt: int) -> Ledger:
        """Take the job's lease, turn an earlier attempt's `sending` into `unknown`, and
        read every recipient's entry: one transaction, one read for the whole job."""
        engine = get_engine(settings.DATABASE_URL)
        try:
            with _database(job_id), engine.begin() as conn:
                _take_lease(conn, job_id, attempt)
                now = utcnow()
                conn.execute(
                    update(T)
                    .where(T.c.job_id == job_id, T.c.recipient != LEASE_KEY)
                    .where(T.c.status == SENDING)
                    .values(status=UNKNOWN, error=CRASHED_WHILE_SENDING, updated_at=now)
                )
                rows = conn.execute(
                    select(T.c.recipient, T.c.status, T.c.attempt, T.c.code, T.c.error).where(
                        T.c.job_id == job_id, T.c.recipient != LEASE_KEY
                    )
                ).all()
        except IntegrityError:
            raise _lease_conflict(engine, job_id) from None
        entries = {
            row.recipient: Entry(row.status, row.attempt, row.code, row.error) for row in rows
        }
        return cls(engine, job_id, attempt, entries)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        except (SQLAlchemyError, TransientJobError):
            if exc is None:
                raise
            # Do not hide the error in flight; a lease left held goes to the next attempt.
            log.warning("job %s: the mail ledger could not be closed", self.job_id, exc_info=True)

    def begin(self, key: str) -> None:
        """Committed just before DATA: from here on, a crash leaves the outcome unknown.

        Raises TransientJobError (nothing sent) if another attempt has the job or the key.
        """
        seen = self.entries.get(key)  # what the row says once the pending marks are in
        now = utcnow()
        try:
            with _database(self.job_id), self._engine.begin() as conn:
                self._check_lease(conn)
                self._write_pending(conn)
                if seen is not None:
                    claimed = conn.execute(
                        update(T)
                        .where(T.c.job_id == self.job_id, T.c.recipient == key)
                        .where(T.c.status == seen.status, T.c.attempt == seen.attempt)
                        .values(
                            status=SENDING,
                            attempt=self.attempt,
                            code=None,
                            error=None,
                            updated_at=now,
                        )
                    )
                    if claimed.rowcount != 1:
                        raise _busy(self.job_id)
                else:
                    conn.execute(insert(T).values(self._row(key, SENDING, None, None, now)))
        except IntegrityError:
            raise _busy(self.job_id) from None
        self._written()
        self._stored.add(key)
        self.entries[key] = Entry(status=SENDING, attempt=self.attempt)

    def record(
        self, key: str, status: str, *, code: int | None = None, error: str | None = None
    ) -> Entry:
        """Note an outcome; it is written with the next `begin`, `sync` or `close`."""
        entry = Entry(status=status, attempt=self.attempt, code=code, error=error)
        self.entries[key] = self._pending[key] = entry
        return entry

    def sync(self) -> None:
        """Write the outcomes noted since the last write (after each batch)."""
        if not self._pending:
            return
        with _database(self.job_id), self._engine.begin() as conn:
            self._check_lease(conn)
            self._write_pending(conn)
        self._written()

    def close(self) -> None:
        """Write what is left and free the lease (the same attempt may open it again)."""
        if not self._open:
            return
        self._open = False
        with _database(self.job_id), self._engine.begin() as conn:
            freed = conn.execute(
                self._lease_filter(update(T)).values(status=FREE, updated_at=utcnow())
            )
            if freed.rowcount != 1:
                log.warning(
                    "job %s attempt %d was taken over; %d outcomes not written",
                    self.job_id,
                    self.attempt,
                    len(self._pending),
                )
                return
            self._write_pending(conn)
        self._written()

    # ------------------------------------------------------------------ internals
    def _lease_filter(self, statement: Update) -> Update:
        return statement.where(
            T.c.job_id == self.job_id,
            T.c.recipient == LEASE_KEY,
            T.c.status == HELD,
            T.c.attempt == self.attempt,
        )

    def _check_lease(self, conn: Connection) -> None:
        """Still ours? The UPDATE also locks the lease row until this transaction ends."""
        if not self._open:
            raise RuntimeError("the mail ledger is closed")
        touched = conn.execute(self._lease_filter(update(T)).values(updated_at=utcnow()))
        if touched.rowcount != 1:
            raise TransientJobError(
                f"job {self.job_id} was taken over by a newer attempt while attempt "
                f"{self.attempt} was sending; it stops here"
            )

    def _write_pending(self, conn: Connection) -> None:
        if not self._pending:
            return
        now = utcnow()
        new = [
            self._row(k, e.status, e.code, e.error, now)
            for k, e in self._pending.items()
            if k not in self._stored
        ]
        old = [
            {"b_key": k, "b_status": e.status, "b_code": e.code, "b_error": _clip(e.error)}
            for k, e in self._pending.items()
            if k in self._stored
        ]
        if new:
            conn.execute(insert(T), new)
        if old:
            conn.execute(
                update(T)
                .where(T.c.job_id == self.job_id, T.c.recipient == bindparam("b_key"))
                .values(
                    status=bindparam("b_status"),
                    code=bindparam("b_code"),
                    error=bindparam("b_error"),
                    attempt=self.attempt,
                    updated_at=now,
                ),
                old,
            )

    def _written(self) -> None:
        self._stored.update(self._pending)
        self._pending.clear()

    def _row(
        self, key: str, status: str, code: int | None, error: str | None, now: datetime
    ) -> dict[str, object]:
        return {
            "job_id": self.job_id,
            "recipient": key,
            "status": status,
            "attempt": self.attempt,
            "code": code,
            "error": _clip(error),
            "updated_at": now,
        }


def _clip(error: str | None) -> str | None:
    return None if error is None else error[:MAX_ERROR]


def _take_lease(conn: Connection, job_id: str, attempt: int) -> None:
    """Hold the job's lease for `attempt`, or raise TransientJobError (IntegrityError when
    the lease row is being created by someone else, or the job row is gone)."""
    key = (T.c.job_id == job_id, T.c.recipient == LEASE_KEY)
    lease = conn.execute(select(T.c.status, T.c.attempt).where(*key).with_for_update()).first()
    now = utcnow()
    if lease is None:
        conn.execute(
            insert(T).values(
                job_id=job_id, recipient=LEASE_KEY, status=HELD, attempt=attempt, updated_at=now
            )
        )
        return
    if lease.status == HELD and lease.attempt >= attempt:
        raise _busy(job_id)
    taken = conn.execute(
        update(T)
        .where(*key, T.c.status == lease.status, T.c.attempt == lease.attempt)
        .values(status=HELD, attempt=attempt, updated_at=now)
    )
    if taken.rowcount != 1:
        raise _busy(job_id)  # another worker took it between our read and our write
    if lease.status == HELD:
        log.warning("job %s: attempt %d takes over from attempt %d", job_id, attempt, lease.attempt)


def _lease_conflict(engine: Engine, job_id: str) -> PermanentJobError | TransientJobError:
    """Why creating the lease row failed: a racing worker, or a job that no longer exists."""
    jobs = table("report_jobs", column("id"))
    with engine.connect() as conn:
        exists = conn.execute(select(jobs.c.id).where(jobs.c.id == job_id)).first()
    if exists is None:
        return PermanentJobError(f"job {job_id} no longer exists; nothing is sent")
    return _busy(job_id)
