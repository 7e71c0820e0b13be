"""Our kombu Redis transport: one client per pool, the same messages as kombu's own."""

from __future__ import annotations

import pytest
from kombu import Connection, Exchange, Queue
from kombu.transport import redis as kombu_redis

from app.core import redis_transport
from tests.infra import RedisServer

QUEUE = Queue("transport-test", Exchange("transport-test"), routing_key="transport-test")


@pytest.fixture(scope="module")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url(0)


def _publish(connection: Connection, body: dict[str, int]) -> None:
    connection.Producer().publish(
        body,
        exchange=QUEUE.exchange,
        routing_key="transport-test",
        declare=[QUEUE],
        serializer="json",
    )


def _drain(connection: Connection) -> list[dict[str, int]]:
    received: list[dict[str, int]] = []
    with connection.SimpleQueue(QUEUE) as queue:
        while True:
            try:
                message = queue.get(timeout=1)
            except queue.Empty:
                return received
            received.append(message.payload)
            message.ack()


def test_redis_urls_resolve_to_our_transport_and_keep_their_scheme(redis_url: str) -> None:
    redis_transport.install()
    with Connection(redis_url) as connection:
        assert isinstance(connection.transport, redis_transport.Transport)
        assert connection.as_uri().startswith("redis://")  # what Flower and banners parse


def test_one_client_serves_every_publish_until_the_pool_changes(redis_url: str) -> None:
    redis_transport.install()
    with Connection(redis_url) as connection:
        channel = connection.default_channel
        clients = set()
        for number in range(3):
            _publish(connection, {"n": number})
            clients.add(id(channel._shared_client))
        assert len(clients) == 1
        # A fork or a lost connection replaces the pool: the client follows it.
        before = channel._shared_client
        channel._disconnect_pools()
        _publish(connection, {"n": 3})
        assert channel._shared_client is not before
        assert channel._shared_client.connection_pool is channel.pool
        assert [m["n"] for m in _drain(connection)] == [0, 1, 2, 3]


def test_stock_kombu_and_ours_read_each_others_messages(redis_url: str) -> None:
    redis_transport.install()
    with (
        Connection(redis_url) as ours,
        Connection(redis_url, transport=kombu_redis.Transport) as stock,
    ):
        assert not isinstance(stock.transport, redis_transport.Transport)
        _publish(ours, {"from": 1})
        assert _drain(stock) == [{"from": 1}]
        _publish(stock, {"from": 2})
        assert _drain(ours) == [{"from": 2}]
