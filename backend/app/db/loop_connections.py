"""PostgreSQL connections owned by an event loop, for reads the loop awaits without a thread.

A read on a thread costs PostgreSQL's round trip plus two hand-offs of the GIL, and under
load the threads mostly pass the GIL round: the status poll on PostgreSQL spent more CPU on
the hop (much of it in the kernel, on the GIL's futex) than on the query. psycopg's
`AsyncConnection` lets the loop await the reply instead. Each loop keeps a few connections
in autocommit (a SELECT needs no BEGIN or COMMIT); a connection the server dropped is
closed and the read runs once more on a new one, as `PreparedStatement`'s unpinged reads do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from sqlalchemy.engine import URL

CONNECTIONS_PER_LOOP = 4
"""Reads in flight at once per event loop: enough to overlap the round trips of one API
process; each is a server process on PostgreSQL's side."""
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 10
"""A server that stops answering (a partition, a stuck lock) fails the read with
`TimeoutError` after this, instead of holding one of the loop's connections for good."""


class _LoopConnections:
    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self.idle: list[psycopg.AsyncConnection[Any]] = []
        self.turns = asyncio.Semaphore(CONNECTIONS_PER_LOOP)

    async def fetch(self, sql: str, args: Any) -> tuple[list[Sequence[Any]], Any]:
        async with self.turns:
            pooled = bool(self.idle)
            try:
                return await self._fetch_once(sql, args)
            except psycopg.OperationalError:
                if not pooled:
                    raise
                await self.close()  # the server dropped them all, as a restart does
            return await self._fetch_once(sql, args)

    async def _fetch_once(self, sql: str, args: Any) -> tuple[list[Sequence[Any]], Any]:
        connection = self.idle.pop() if self.idle else await self._connect()
        try:
            async with asyncio.timeout(READ_TIMEOUT_SECONDS):
                cursor = await connection.execute(sql, args, prepare=True)
                rows = await cursor.fetchall()
        except BaseException:  # a query cut short leaves the connection in doubt
            await connection.close()
            raise
        self.idle.append(connection)
        return rows, cursor.description

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self.conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
        )

    async def close(self) -> None:
        idle, self.idle = self.idle, []
        for connection in idle:
            await connection.close()


_by_loop: WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _LoopConnections]] = (
    WeakKeyDictionary()
)


def _conninfo(url: URL) -> str:
    """psycopg's connection string for a SQLAlchemy URL (`postgresql+psycopg://...`)."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


async def fetch(url: URL, sql: str, args: Any) -> tuple[list[Sequence[Any]], Any]:
    """Run one SELECT on this loop's connections to `url`: (rows, the cursor's description).
    Driver errors are psycopg's."""
    pools = _by_loop.setdefault(asyncio.get_running_loop(), {})
    conninfo = _conninfo(url)
    pool = pools.get(conninfo)
    if pool is None:
        pool = pools[conninfo] = _LoopConnections(conninfo)
    return await pool.fetch(sql, args)


async def close_for_this_loop() -> None:
    """Close this loop's connections (the API's shutdown)."""
    for pool in _by_loop.pop(asyncio.get_running_loop(), {}).values():
        await pool.close()
