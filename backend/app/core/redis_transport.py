"""kombu's Redis transport, reusing one redis-py client per channel.

Stock kombu (5.7) builds a new `redis.Redis` object for every command it sends outside the
consumer loop (`Channel.conn_or_acquire`): each published task, each task event, each ack's
bookkeeping. Building one registers ~170 response callbacks, about 0.15 ms of Python: a third
of what `send_task` costs. The client is only a thin, thread-safe front for the channel's
connection pool, so one per pool does the same work. Messages, keys and semantics are
unchanged: a stock Celery worker or producer interoperates with this one.

It also keeps a channel usable after its connection closed. kombu derives a pool's parameters
from `self.connection.client` each time it builds one (`_connparams`), and drops a channel's
pools when it closes. When Redis restarts under a busy worker, Celery's consumer first
`collect()`s the connection: its close of the channel stops at the deletion of an auto-delete
fanout queue (the remote-control one) that Redis cannot answer, and the transport forgets its
kombu connection (`client = None`). Then it `close()`s the connection: the channel drops its
pools and restores the message of the task still running, which needs a pool again, as does
that task's ack when it ends. Both built it from the `None` client and raised AttributeError
('NoneType' object has no attribute 'hostname'; the class of bug of kombu#582), which Celery
does not take for a connection error: the worker exited. Here the parameters are computed
once, while the connection is alive, so such a late command reaches Redis or fails with a
connection error, which Celery logs and survives.

`install()` makes it what `redis://` means to kombu in this process (the Celery app module
calls it), so broker URLs, Flower's broker page and worker banners still say `redis://`.
`rediss://` and `sentinel://` keep kombu's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kombu.transport
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    _shared_client: Any = None
    _params: dict[bool, dict[str, Any]] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        # The consumer's pool (asynchronous) was built by the ping above; build the other's
        # parameters now too, while `self.connection.client` still exists.
        self._connparams(asynchronous=False)

    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        """kombu's parameters, computed once per flavour (the connection may be gone later)."""
        if self._params is None:
            self._params = {}
        params = self._params.get(asynchronous)
        if params is None:
            # kombu's own method, unannotated like most of kombu.
            params = super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]
            self._params[asynchronous] = params
        return dict(params)

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        shared = self._shared_client
        # The pool is replaced after a fork or a lost connection: follow it.
        if shared is None or shared.connection_pool is not self.pool:
            # kombu's own method, unannotated like most of kombu.
            shared = self._shared_client = self._create_client()  # type: ignore[no-untyped-call]
        try:
            yield shared
        finally:
            if self.closed:
                # A closed channel's late command (a restore, an ack): no socket left open.
                self._shared_client = None
                self._disconnect_pools()  # type: ignore[no-untyped-call]


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Resolve the `redis` transport alias to this module's Transport (idempotent)."""
    kombu.transport.TRANSPORT_ALIASES["redis"] = f"{__name__}:Transport"
    # kombu memoizes resolved aliases: drop a stock class resolved before this call.
    cache = getattr(kombu.transport, "_transport_cache", {})
    if cache.get("redis") not in (None, Transport):
        del cache["redis"]
