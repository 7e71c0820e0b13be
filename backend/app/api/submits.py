"""Submissions that arrive together are written together (a group commit).

Under load a submit's cost is mostly its own trip to a thread, session, transaction and
commit, and on SQLite its turn at the one writer lock. Here each API process keeps the
submissions that arrive while a batch is being written and writes them next, all at once:
one thread hop, one transaction with one INSERT per shape of row, one commit, then each
publish. Alone, a submit is written at once (a batch of one): nothing waits for company.

Each submission keeps its own outcome: a refused token, a quota or a missing dataset
refuses that one only. If the batch's transaction fails, each is written again on its own,
so one submission never fails because of another.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from weakref import WeakKeyDictionary

from anyio import to_thread
from fastapi import HTTPException
from sqlalchemy.orm import Session

from app.api.deps import as_caller, hot_path_limiter, remembered_caller, resolve_user
from app.core.config import get_settings
from app.core.errors import DomainError
from app.db.session import session_factory
from app.jobs.submit import Accepted, JobOrder, accept_job, accept_jobs
from app.quotas.stored_bytes import check_stored_bytes, known_under
from app.users.models import User

log = logging.getLogger(__name__)

MAX_BATCH = 64
"""Submissions written in one transaction at most: enough that a burst of clients shares a
commit, few enough that a batch's thread hop stays short."""

OrderOf = Callable[[Session, User], JobOrder]
"""Builds a submission's order for its caller, on the batch's thread and session (a heavy
report looks up its dataset there). A `DomainError` refuses that submission only."""


@dataclass
class _Waiting:
    token: str
    caller: User | None
    """The caller if this process remembered the token; else resolved on the batch's thread."""
    order_of: OrderOf
    storing: bool
    future: asyncio.Future[Accepted] = field(repr=False)


class _Batches:
    """One event loop's waiting submissions, and the one task writing them batch by batch.

    One batch at a time per process: the next fills while one is written, which is what
    makes the batches grow under load, and each owner's quota counts are read after the
    previous batch's rows are committed, so one process never lets a quota pass twice."""

    def __init__(self) -> None:
        self.waiting: list[_Waiting] = []
        self.writer: asyncio.Task[None] | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make sure the writer runs. It takes the waiting submissions when it first runs,
        after every request already read by the loop has joined them."""
        if self.writer is None:
            self.writer = loop.create_task(self._write_all())

    async def _write_all(self) -> None:
        try:
            while self.waiting:
                batch, self.waiting = self.waiting[:MAX_BATCH], self.waiting[MAX_BATCH:]
                await self._write(batch)
        except asyncio.CancelledError:  # the loop is closing: nobody is left waiting
            for waiting in self.waiting:
                waiting.future.cancel()
            self.waiting = []
            raise
        finally:
            self.writer = None

    @staticmethod
    async def _write(batch: list[_Waiting]) -> None:
        try:
            outcomes = await to_thread.run_sync(_write_batch, batch, limiter=hot_path_limiter(True))
        except asyncio.CancelledError:
            for waiting in batch:
                waiting.future.cancel()
            raise
        except Exception as exc:  # a bug: each submission answers it (a 500), none hangs
            log.exception("a batch of %d submissions failed", len(batch))
            outcomes = [exc] * len(batch)
        for waiting, outcome in zip(batch, outcomes, strict=True):
            if waiting.future.done():  # its client went away; the job stands
                continue
            if isinstance(outcome, BaseException):
                waiting.future.set_exception(outcome)
            else:
                waiting.future.set_result(outcome)


_batches: WeakKeyDictionary[asyncio.AbstractEventLoop, _Batches] = WeakKeyDictionary()


async def submit_in_batch(token: str, order_of: OrderOf, *, storing: bool = True) -> Accepted:
    """Accept the caller's job with whatever other submissions this process is writing
    next. The caller's token is checked first from memory (an expired one is the 401 here),
    else on the batch's thread."""
    caller = remembered_caller(token)
    loop = asyncio.get_running_loop()
    batches = _batches.get(loop)
    if batches is None:
        batches = _batches[loop] = _Batches()
    waiting = _Waiting(token, caller, order_of, storing, loop.create_future())
    batches.waiting.append(waiting)
    batches.start(loop)
    return await waiting.future


def _write_batch(batch: list[_Waiting]) -> list[Accepted | BaseException]:
    """On a thread: the batch in one transaction, or, if that fails, each on its own."""
    if len(batch) > 1:
        try:
            return _together(batch)
        except Exception:
            log.warning("a batch of %d submissions failed; writing each alone", len(batch))
    return [_alone(waiting) for waiting in batch]


def _together(batch: list[_Waiting]) -> list[Accepted | BaseException]:
    session = session_factory()()
    try:
        outcomes: list[Accepted | BaseException | None] = [None] * len(batch)
        orders: list[tuple[int, JobOrder]] = []
        for index, waiting in enumerate(batch):
            try:
                orders.append((index, _order(session, waiting)))
            except (DomainError, HTTPException) as exc:  # this submission's own refusal
                outcomes[index] = exc
        accepted = accept_jobs(session=session, orders=[order for _, order in orders])
        for (index, _), outcome in zip(orders, accepted, strict=True):
            outcomes[index] = outcome
        if session.in_transaction():  # a token's `last_used_at`, when nothing was accepted
            session.commit()
        return [outcome for outcome in outcomes if outcome is not None]
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _alone(waiting: _Waiting) -> Accepted | BaseException:
    def accept(session: Session, user: User) -> Accepted:
        order = waiting.order_of(session, user)
        return accept_job(
            session=session, owner=order.owner, job_type=order.job_type, params=order.params
        )

    try:
        return as_caller(waiting.token, accept, storing=waiting.storing)
    except Exception as exc:
        return exc


def _order(session: Session, waiting: _Waiting) -> JobOrder:
    """The submission's order, once its caller is known and under the stored-bytes quota."""
    user = waiting.caller or resolve_user(session, waiting.token)
    if waiting.storing:
        settings = get_settings()
        if not known_under(user.id, settings):
            check_stored_bytes(session, user.id, settings)
    return waiting.order_of(session, user)


def order(job_type: str, params: dict[str, Any]) -> OrderOf:
    """An order whose parameters need no lookup."""
    return lambda session, user: JobOrder(owner=user, job_type=job_type, params=params)
