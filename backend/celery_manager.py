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
import os
import sys
from collections.abc import Sequence
from pathlib import Path

# In a checkout, the `app` beside this script (also through a symlink to it); alone, the
# installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from app.core.config import Settings, get_settings
from app.core.queues import QUEUES, REPORTS_QUEUE
from app.core.startup import log_deployment, require_broker
from app.core.supervisor import Supervisor

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


def cmd_status(args: argparse.Namespace) -> int:
    from sqlalchemy import func, select

    from app.db.session import session_scope
    from app.jobs.dispatch import Dispatcher
    from app.jobs.models import ReportJob

    settings = get_settings()
    dispatcher = Dispatcher(settings)
    health = dispatcher.probe()
    print("backends:")
    for name, ok in health.items():
        print(f"  {name:8} {'up' if ok else 'DOWN'}")
    if "celery" in dispatcher.backends and health.get("celery"):
        from app.core.celery_app import celery_app

        replies = celery_app.control.inspect(timeout=args.timeout).active_queues() or {}
        print(f"workers: {len(replies)}")
        for worker, queues in sorted(replies.items()):
            names = ",".join(sorted(q["name"] for q in queues))
            print(f"  {worker}  queues={names}")
    for name, backend in dispatcher.backends.items():
        if health.get(name):
            lengths = backend.queue_lengths()
            if lengths:
                print(
                    f"queue lengths ({name}): " + ", ".join(f"{q}={n}" for q, n in lengths.items())
                )
    with session_scope() as session:
        rows = session.execute(
            select(ReportJob.status, func.count()).group_by(ReportJob.status)
        ).all()
    print("jobs by status: " + (", ".join(f"{s}={n}" for s, n in sorted(rows)) or "none"))
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
    status = commands.add_parser("status", help="workers alive, queue lengths, jobs by status")
    status.add_argument("--timeout", type=float, default=2.0)
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
