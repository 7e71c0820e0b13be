"""The HTTP endpoint of a Celery worker's metrics.

A worker has no web app, yet its pool children record the jobs they run: its main process
serves the merged samples of its instance (`metrics.registry()`) on its own port, for
Prometheus to scrape next to the API's `/metrics`.
"""

from __future__ import annotations

import logging
import threading
from http.server import ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import MetricsHandler

from app.core import metrics
from app.core.metrics_multiprocess import multiprocess_dir

log = logging.getLogger(__name__)

_lock = threading.Lock()
_server: ThreadingHTTPServer | None = None


class _Handler(MetricsHandler):
    """`/` or `/metrics`: this instance's metrics, merged at each request; else 404."""

    def do_GET(self) -> None:
        if self.path.split("?")[0] not in ("/", "/metrics"):
            self.send_error(404)
            return
        self.registry = metrics.registry()
        super().do_GET()

    def log_message(self, format: str, *args: Any) -> None:
        return


PORT_FILE = "metrics-port"
"""In the worker's multiprocess dir: `host:port` of its endpoint (for discovery)."""


def start_worker_metrics_server(port: int, addr: str = "127.0.0.1", *, span: int = 1) -> int | None:
    """Serve this instance's merged metrics over HTTP (a Celery worker's main process).

    Tries `port`, `port + 1`, ... (`span` ports in all) and keeps the first it can bind, so
    several workers on one host never collide: binding is the test, atomic across processes.
    The chosen port is logged and written to `metrics-port` in the instance's multiprocess
    directory. Returns the port, or None: no port free is logged, not fatal (a worker that
    runs jobs matters more than its metrics). Port 0 disables it. `addr` defaults to
    loopback: the endpoint has no authentication.

    Start it after the pool has forked (`worker_ready`), so children do not inherit the
    socket.
    """
    global _server
    if port <= 0:
        return None
    with _lock:
        if _server is not None:
            return int(_server.server_address[1])
        server: ThreadingHTTPServer | None = None
        last_error: OSError | None = None
        for candidate in range(port, min(port + max(span, 1), 65536)):
            try:
                server = ThreadingHTTPServer((addr, candidate), _Handler)
                break
            except OSError as exc:
                last_error = exc
        if server is None:
            log.warning(
                "worker metrics server not started: no free port in %d-%d on %s (%s)",
                port,
                port + max(span, 1) - 1,
                addr,
                last_error,
            )
            return None
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True)
        thread.start()
        _server = server
        bound = int(server.server_address[1])
        _write_port_file(addr, bound)
        log.info("worker metrics on http://%s:%d/metrics", addr, bound)
        return bound


def _write_port_file(addr: str, port: int) -> None:
    directory = multiprocess_dir()
    if directory is None:
        return
    try:
        (directory / PORT_FILE).write_text(f"{addr}:{port}\n")
    except OSError as exc:
        log.debug("cannot write %s: %s", directory / PORT_FILE, exc)


def stop_worker_metrics_server() -> None:
    """Stop serving and free the port (worker shutdown)."""
    global _server
    with _lock:
        if _server is not None:
            _server.shutdown()
            _server.server_close()
            _server = None
