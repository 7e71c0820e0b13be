"""Small Redis helpers shared by the Celery and RQ backends (bounded, never hanging)."""

from __future__ import annotations

from redis import Redis


def client(url: str, timeout: float) -> Redis:
    return Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=max(timeout, 2.0),
        retry_on_timeout=False,
        health_check_interval=0,
    )


def ping(url: str, timeout: float) -> bool:
    conn = client(url, timeout)
    try:
        return bool(conn.ping())
    finally:
        conn.close()
