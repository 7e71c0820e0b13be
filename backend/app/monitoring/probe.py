"""Container health probes (docker-compose `healthcheck`), exit status 0 when healthy.

    python -m app.monitoring.probe http URL           a 2xx answer (API readiness, Flower)
    python -m app.monitoring.probe worker             a Celery worker on this host answers ping
    python -m app.monitoring.probe beat [--max-age S] beat saved its schedule recently

Slim images have no curl, and a worker's health is "answers a ping", not "has a process".
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence


def probe_http(url: str, timeout: float) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300, f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}"
    except (OSError, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"


def probe_worker(timeout: float, host: str | None = None) -> tuple[bool, str]:
    """A worker named `...@<this host>` answers a broadcast ping (names: celery_manager.py)."""
    from app.core.celery_app import celery_app

    host = host or socket.gethostname()
    replies = celery_app.control.ping(timeout=timeout) or []
    names = [name for reply in replies for name in reply]
    mine = [name for name in names if name.endswith(f"@{host}")]
    return bool(mine), f"answered: {', '.join(mine) or 'none'} (of {len(names)} workers)"


def probe_beat(max_age: float) -> tuple[bool, str]:
    """Beat rewrites its schedule file at least every few minutes (the relay runs often)."""
    from app.core.config import get_settings

    var_dir = get_settings().VAR_DIR
    files = list(var_dir.glob("celerybeat-schedule*"))
    if not files:
        return False, f"no schedule file under {var_dir}"
    age = time.time() - max(path.stat().st_mtime for path in files)
    return age <= max_age, f"schedule saved {age:.0f} s ago (limit {max_age:g} s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.monitoring.probe",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    http = commands.add_parser("http", help="GET a URL, healthy on 2xx")
    http.add_argument("url")
    http.add_argument("--timeout", type=float, default=5.0)
    worker = commands.add_parser("worker", help="a Celery worker on this host answers ping")
    worker.add_argument("--timeout", type=float, default=5.0)
    beat = commands.add_parser("beat", help="beat's schedule file is fresh")
    beat.add_argument("--max-age", type=float, default=600.0)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "http":
        ok, detail = probe_http(args.url, args.timeout)
    elif args.command == "worker":
        ok, detail = probe_worker(args.timeout)
    else:
        ok, detail = probe_beat(args.max_age)
    print(("healthy: " if ok else "unhealthy: ") + detail)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
