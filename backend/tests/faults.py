"""Real faults for tests: dropped database connections, an unwritable directory, an object
store that stops answering (a TCP proxy in front of moto_server), and job rows read in a way
that survives all three."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, select, text
from sqlalchemy.pool import NullPool

from app.jobs.models import ReportJob
from tests.conftest import POSTGRES_ADMIN_URL, require
from tests.server import free_port


def terminate_connections(database_url: str) -> int:
    """`pg_terminate_backend` on every connection to the database (the API's, the relay's,
    the workers'); how many there were."""
    database = database_url.rsplit("/", 1)[1]
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            killed = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database},
            ).scalar()
    finally:
        engine.dispose()
    return int(killed or 0)


def read_jobs(database_url: str, ids: list[str]) -> dict[str, ReportJob]:
    """The rows, read on a connection of their own (none of the service's pools)."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        from sqlalchemy.orm import Session

        with Session(engine, expire_on_commit=False) as session:
            rows = session.scalars(select(ReportJob).where(ReportJob.id.in_(ids))).all()
            for row in rows:
                session.expunge(row)
            return {row.id: row for row in rows}
    finally:
        engine.dispose()


def wait_final(database_url: str, ids: list[str], timeout: float) -> dict[str, ReportJob]:
    """Until every job is final; the rows (a read that fails is simply repeated)."""
    deadline = time.monotonic() + timeout
    rows: dict[str, ReportJob] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            rows = read_jobs(database_url, ids)
        if len(rows) == len(ids) and all(
            r.status in ("completed", "failed", "cancelled") for r in rows.values()
        ):
            return rows
        time.sleep(0.2)
    statuses = sorted((r.status, r.attempts) for r in rows.values())
    raise AssertionError(f"not all final after {timeout}s: {statuses}")


@contextlib.contextmanager
def unwritable(directory: Path) -> Iterator[None]:
    """No new entry can be made in `directory` for the block: `chmod 555`, or for root
    (whom modes do not stop) `chattr +i`. Skips where neither works."""
    directory.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        mode = directory.stat().st_mode
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(mode)
        return
    done = subprocess.run(["chattr", "+i", str(directory)], capture_output=True, text=True)
    require(done.returncode == 0, f"cannot make {directory} unwritable: {done.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


class FlakyProxy:
    """A TCP proxy in front of `upstream` that the test can take down (connections refused,
    the open ones cut) and bring back on the same port, its upstream's data intact."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.up()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            cut, self._open = self._open, set()
        if listener is not None:
            _close(listener)
        for conn in cut:
            _close(conn)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # taken down
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _close(client)
                continue
            with self._lock:
                if self._listener is not listener:
                    _close(client)
                    _close(server)
                    return
                self._open |= {client, server}
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=_pump, args=(a, b), daemon=True).start()


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(source)
        _close(sink)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def attempts_histogram(rows: dict[str, Any]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for row in rows.values():
        counts[row.attempts] = counts.get(row.attempts, 0) + 1
    return dict(sorted(counts.items()))
