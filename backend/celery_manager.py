"""Run and inspect the workers.

    .venv/bin/python backend/celery_manager.py worker QUEUE[,QUEUE...] CONCURRENCY  supervised
    .venv/bin/python backend/celery_manager.py beat                  periodic tasks
    .venv/bin/python backend/celery_manager.py flower PORT           web UI (basic auth required)
    .venv/bin/python backend/celery_manager.py status                workers, queues, jobs
    .venv/bin/python backend/celery_manager.py rq-worker [QUEUE ...] the RQ fallback worker

`worker` runs the Celery worker as its child and starts it again when it exits on its own
(1 s, doubling to 30 s between attempts, back to 1 s after a minute of running), so a queue is
never left without a consumer; SIGTERM or SIGINT to it is a warm shutdown of both (exit 0).

Every command reads the same environment as the API (CELERY_BROKER_URL, DATABASE_URL, ...),
from any directory: a relative VAR_DIR and the SQLite default are anchored at the project root.
Run it with the Python of the environment the service is installed in; it uses the `app`
package beside it (a checkout), else the installed one.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

# In a checkout, the `app` beside this script (also through a symlink to it); alone, the
# installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from app.core.config import Settings, get_settings
from app.core.queues import QUEUES, REPORTS_QUEUE
from app.core.startup import log_deployment, require_broker
from app.core.supervisor import Supervisor

if TYPE_CHECKING:
    from app.monitoring.status import StatusSnapshot

CELERY_APP = "app.core.celery_app:celery_app"


def _queues(value: str) -> list[str]:
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in QUEUES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown queue {', '.join(unknown) or value!r}; choose from {', '.join(QUEUES)}"
        )
    return names


CELERY = [sys.executable, "-m", "celery", "-A", CELERY_APP]
"""The celery command for our app, run by this environment's Python."""


def _exec(argv: list[str]) -> int:
    """Replace this process, so signals (TERM for a warm shutdown) reach Celery directly."""
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 0  # pragma: no cover


def worker_argv(queues: list[str], concurrency: int, loglevel: str) -> list[str]:
    settings = get_settings()
    argv = [
        *CELERY,
        "worker",
        "-Q",
        ",".join(queues),
        "-c",
        str(concurrency),
        "-n",
        # The supervisor's pid: a restarted worker keeps its name.
        f"{'+'.join(queues)}-%h-{os.getpid()}@%h",
        "--loglevel",
        loglevel,
        "-E",
    ]
    if REPORTS_QUEUE in queues:
        # Report builders can hold a lot of memory; recycle a child that grew too much.
        argv += ["--max-memory-per-child", str(settings.WORKER_MAX_MEMORY_PER_CHILD_KB)]
    return argv


def cmd_worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    require_broker(settings)  # the worker checks again (worker_init), for direct starts
    settings.visibility_timeout  # noqa: B018 - fail fast on an unsafe configuration
    from app.core.logging import configure_logging

    configure_logging(settings)  # the supervisor's own lines: starts, exits, restarts
    argv = worker_argv(args.queues, args.concurrency, args.loglevel)
    return Supervisor(argv, name=f"celery worker {','.join(args.queues)}").run()


def cmd_beat(args: argparse.Namespace) -> int:
    settings = get_settings()
    require_broker(settings)
    schedule = settings.VAR_DIR / "celerybeat-schedule"
    schedule.parent.mkdir(parents=True, exist_ok=True)
    return _exec(
        [
            *CELERY,
            "beat",
            "--schedule",
            str(schedule),
            "--loglevel",
            args.loglevel,
        ]
    )


def flower_command(settings: Settings, port: int, address: str) -> tuple[list[str], dict[str, str]]:
    """Flower's argv and the environment it adds: the credentials travel in
    `FLOWER_BASIC_AUTH` (an option Flower reads from its environment), never on the command
    line, where `ps` shows them to every user of the host.

    Raises ValueError for missing credentials, or for a `,` (Flower splits the option on it,
    silently cutting the password) or a `:` (it separates user from password) in either.
    """
    user = settings.FLOWER_USER
    password = settings.FLOWER_PASSWORD.get_secret_value()
    if not user or not password:
        raise ValueError(
            "Flower needs FLOWER_USER and FLOWER_PASSWORD: it shows every task's arguments "
            "and can revoke them, so it never runs open."
        )
    for name, value in (("FLOWER_USER", user), ("FLOWER_PASSWORD", password)):
        bad = sorted({c for c in value if c in ",:"})
        if bad:
            raise ValueError(
                f"{name} must not contain {' or '.join(repr(c) for c in bad)}: Flower splits "
                "its basic-auth setting on ',' and ':' and would silently use a truncated "
                "credential; choose one without them."
            )
    argv = [*CELERY, "flower", f"--port={port}", f"--address={address}"]
    return argv, {"FLOWER_BASIC_AUTH": f"{user}:{password}"}


def cmd_flower(args: argparse.Namespace) -> int:
    try:
        argv, env = flower_command(get_settings(), args.port, args.address)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    os.environ.update(env)  # inherited through exec; only this user and root can read it
    return _exec(argv)


def _age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"
    return f"{seconds // 3600:.0f} h {seconds % 3600 // 60:.0f} min"


def _due(seconds: float | None) -> str:
    if seconds is None:
        return "no due time"
    return f"due in {_age(seconds)}" if seconds >= 0 else f"overdue by {_age(-seconds)}"


def _more(total: int, shown: int) -> list[str]:
    return [f"  ... and {total - shown} more"] if total > shown else []


def render_status(snap: StatusSnapshot) -> str:
    """The snapshot as one screen of text (`app.monitoring.status` gathers it)."""
    broker, db = snap.broker, snap.database
    out = [f"status at {db.now:%Y-%m-%d %H:%M:%S} UTC (database clock)" if db.now else "status"]
    if broker.state == "unreachable":
        out.append(f"celery: broker unreachable ({broker.detail}); workers and messages unknown")
    else:
        out.append(f"celery: broker {broker.state}")
    out.append(f"rq: {broker.rq_state}")
    unknown = " known (Celery's unknown)" if broker.state == "unreachable" else ""
    out.append(f"workers: {len(broker.workers)}{unknown}")
    out += [f"  {w.name}  [{w.kind}]  queues: {', '.join(w.queues)}" for w in broker.workers]
    out.append("queues:")
    for q in snap.queues:
        messages = "?" if q.messages is None else q.messages
        flag = {True: "  NO CONSUMER", False: "", None: "  consumers unknown"}[q.no_consumer]
        line = f"  {q.name:14} workers {len(q.workers)}  messages {messages}  waiting {q.waiting}"
        out.append(line + flag)
        if q.oldest:
            o = q.oldest
            reason = f": {o.reason}" if o.reason else ""
            on = f" on {o.backend}" if o.backend else ""
            out.append(
                f"    oldest {o.job_id} {o.job_type}, {o.status}{on}, {_age(o.age_seconds)} old"
                + reason
            )
    if db.error:
        out.append(f"database unreachable: {db.error}")
        return "\n".join(out)
    out.append(f"stuck (started, no heartbeat for {snap.heartbeat_timeout:g} s): {db.stuck_total}")
    for j in db.stuck:
        out.append(
            f"  {j.job_id} {j.job_type} on {j.queue}, worker {j.worker or '?'}, "
            f"attempt {j.attempts}, last beat {_age(j.seconds_since_beat)} ago"
        )
    out += _more(db.stuck_total, len(db.stuck))
    out.append(f"retrying: {db.retrying_total}")
    for r in db.retrying:
        out.append(
            f"  {r.job_id} {r.job_type} attempt {r.attempts}/{r.max_attempts}, "
            + _due(r.due_in_seconds)
        )
        out += [f"    {r.error}"] if r.error else []
    out += _more(db.retrying_total, len(db.retrying))
    failed = sum(f.count for f in db.failures)
    window = "hour" if snap.failure_window == 3600 else _age(snap.failure_window)
    out.append(f"failed in the last {window}: {failed}")
    for f in db.failures:
        out.append(f"  {f.job_type:12} {f.count:5}  latest {f.latest_job_id}: {f.latest_error}")
    counts = ", ".join(f"{s}={n}" for s, n in sorted(db.by_status.items())) or "none"
    out.append(f"jobs by status: {counts}")
    return "\n".join(out)


def _json_value(value: object) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def cmd_status(args: argparse.Namespace) -> int:
    from app.monitoring.status import snapshot

    snap = snapshot(get_settings(), timeout=args.timeout)
    if args.json:
        print(json.dumps(dataclasses.asdict(snap), default=_json_value, indent=2))
    else:
        print(render_status(snap))
    return 0


def cmd_rq_worker(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.RQ_REDIS_URL:
        print("RQ_REDIS_URL is not set", file=sys.stderr)
        return 2
    unknown = [name for name in args.queues if name not in QUEUES]
    if unknown:
        print(
            f"unknown queue {', '.join(unknown)}; choose from {', '.join(QUEUES)}", file=sys.stderr
        )
        return 2
    from app.core.logging import configure_logging

    configure_logging(settings)
    log_deployment(settings, "rq worker")
    # Not a stock `rq worker` (pickle, any function): ours, in this process, JSON only, and
    # it performs `app.services.rq_tasks.run` and nothing else. Its scheduler moves retries.
    from app.jobs.backends.rq_worker import run_worker

    return run_worker(
        settings.RQ_REDIS_URL,
        args.queues or list(QUEUES),
        with_scheduler=True,
        logging_level=settings.LOG_LEVEL,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="celery_manager.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="a Celery worker for one or more queues")
    worker.add_argument("queues", type=_queues, help=f"comma-separated, from {', '.join(QUEUES)}")
    worker.add_argument("concurrency", type=int, nargs="?", default=2)
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(func=cmd_worker)
    beat = commands.add_parser("beat", help="the periodic task scheduler")
    beat.add_argument("--loglevel", default="INFO")
    beat.set_defaults(func=cmd_beat)
    flower = commands.add_parser("flower", help="Flower web UI with basic auth")
    flower.add_argument("port", type=int, nargs="?", default=5555)
    flower.add_argument("--address", default="127.0.0.1")
    flower.set_defaults(func=cmd_flower)
    status = commands.add_parser(
        "status", help="workers per queue, waiting, stuck, retrying and failed jobs"
    )
    status.add_argument(
        "--timeout", type=float, default=2.0, help="seconds to wait for the broker and workers"
    )
    status.add_argument("--json", action="store_true", help="the snapshot as JSON")
    status.set_defaults(func=cmd_status)
    rq_worker = commands.add_parser("rq-worker", help="an RQ worker (fallback backend)")
    rq_worker.add_argument("queues", nargs="*", help=f"default: all of {', '.join(QUEUES)}")
    rq_worker.set_defaults(func=cmd_rq_worker)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
