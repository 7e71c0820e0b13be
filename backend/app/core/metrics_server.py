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


def start_worker_metrics_server(port: int, addr: str = "0.0.0.0") -> bool:
    """Serve this instance's merged metrics over HTTP (a Celery worker's main process).

    Start it after the pool has forked (`worker_ready`), so children do not inherit the
    socket. A busy port (two workers on one host with the same setting) is logged, not fatal:
    a worker that runs jobs matters more than its metrics. Port 0 disables it.
    """
    global _server
    if port <= 0:
        return False
    with _lock:
        if _server is not None:
            return True
        try:
            server = ThreadingHTTPServer((addr, port), _Handler)
        except OSError as exc:
            log.warning("worker metrics server not started on port %d: %s", port, exc)
            return False
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, name="metrics-server", daemon=True)
        thread.start()
        _server = server
        log.info("worker metrics on http://%s:%d/metrics", addr, port)
        return True


def stop_worker_metrics_server() -> None:
    """Stop serving and free the port (worker shutdown)."""
    global _server
    with _lock:
        if _server is not None:
            _server.shutdown()
            _server.server_close()
            _server = None
