"""`reportctl`: the management command line.

reportctl token create NAME [--admin] [--email E] [--expires-in 30d] [--update]
                                        print a new API token (only the token, on stdout);
                                        an existing user is unchanged unless --update
reportctl token list [--user NAME]      tokens: id, user, admin, created, last used,
                                        expires, revoked (never the token)
reportctl token revoke ID               revoke a token at once
reportctl db upgrade                    apply migrations
reportctl serve [--host H] [--port P] [--workers N]
                                        run the API (embedded executor included); N API
                                        processes on one port (default API_WORKERS, 1)
reportctl submit pdf|excel|analysis --rows N [--wait] [--out FILE]
                                        post a heavy report, show progress, save the file
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def _token_create(args: argparse.Namespace) -> int:
    from app.core.errors import DomainError
    from app.db.session import session_scope
    from app.users.store import issue_token, parse_duration

    try:
        expires_in = parse_duration(args.expires_in) if args.expires_in else None
    except DomainError as exc:
        print(f"reportctl: {exc.message}", file=sys.stderr)
        return 2
    with session_scope() as session:
        issued = issue_token(
            session=session,
            name=args.name,
            admin=args.admin,
            email=args.email,
            expires_in=expires_in,
            update=args.update,
        )
        notes: list[str] = []
        if issued.changed:
            notes.append(f"updated user {args.name!r}: {', '.join(_described(issued.changed))}")
        if issued.ignored:
            notes.append(
                f"user {args.name!r} already exists and was NOT changed "
                f"({', '.join(_described(issued.ignored))} ignored); "
                "pass --update to change it"
            )
        if issued.expires_at is not None:
            notes.append(f"token {issued.token_id} expires at {_when(issued.expires_at)}")
    # stdout holds only the token (scripts capture it); everything else goes to stderr.
    print(issued.token)
    for note in notes:
        print(f"reportctl: {note}", file=sys.stderr)
    return 0


def _described(attributes: list[str]) -> list[str]:
    return [{"is_admin": "--admin", "email": "--email"}.get(a, a) for a in attributes]


def _when(value: object) -> str:
    from datetime import datetime

    if value is None:
        return "-"
    assert isinstance(value, datetime)
    return value.strftime("%Y-%m-%d %H:%M:%SZ")


def _token_list(args: argparse.Namespace) -> int:
    from app.db.session import session_scope
    from app.users.store import list_tokens

    with session_scope() as session:
        tokens = list_tokens(session=session, user=args.user)
    header = ("ID", "USER", "ADMIN", "CREATED", "LAST USED", "EXPIRES", "REVOKED")
    rows = [header] + [
        (
            str(t.id),
            t.user,
            "yes" if t.admin else "no",
            _when(t.created_at),
            _when(t.last_used_at),
            _when(t.expires_at),
            _when(t.revoked_at),
        )
        for t in tokens
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


def _token_revoke(args: argparse.Namespace) -> int:
    from app.core.errors import DomainError
    from app.db.session import session_scope
    from app.users.store import revoke_token

    try:
        with session_scope() as session:
            revoked = revoke_token(session=session, token_id=args.id)
    except DomainError as exc:
        print(f"reportctl: {exc.message}", file=sys.stderr)
        return 1
    print(f"token {args.id} {'revoked' if revoked else 'was already revoked'}")
    return 0


def _db_upgrade(args: argparse.Namespace) -> int:
    from app.core.config import get_settings
    from app.db import migrations

    migrations.upgrade(get_settings().DATABASE_URL, args.revision)
    return 0


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from app.core.config import get_settings

    settings = get_settings()
    workers = args.workers or settings.API_WORKERS
    host, port = args.host or settings.HOST, args.port or settings.PORT
    if workers == 1:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=host,
            port=port,
            log_level=settings.LOG_LEVEL.lower(),
        )
        return 0
    from app.core import metrics_multiprocess

    # Before uvicorn spawns the workers: they inherit one metrics directory and the seat
    # file in it (app/jobs/local_executor.py: ExecutorSeat), and remove neither.
    metrics_multiprocess.share_with_workers(settings)
    try:
        uvicorn.run(
            "app.cli:worker_app",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            log_level=settings.LOG_LEVEL.lower(),
        )
    finally:
        metrics_multiprocess.teardown_multiprocess()
    return 0


def worker_app() -> FastAPI:
    """One uvicorn worker of `serve --workers N`: the app, in a process that gets SIGTERM
    (a graceful stop, its executor's processes included) when its parent dies, even by
    SIGKILL: no API worker outlives its `reportctl serve`."""
    from app.jobs.local_executor import die_with_parent
    from app.main import create_app

    die_with_parent(os.getppid(), signal.SIGTERM)
    return create_app()


def _workers(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 64:
        raise argparse.ArgumentTypeError("between 1 and 64")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reportctl", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    token = commands.add_parser("token", help="manage API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="create a user's token")
    create.add_argument("name", help="user name (created if new)")
    create.add_argument("--admin", action="store_true", help="the user sees every job")
    create.add_argument("--email", help="where the user's notifications go")
    create.add_argument(
        "--expires-in", metavar="DURATION", help="e.g. 30d, 12h, 2w (default: never expires)"
    )
    create.add_argument(
        "--update",
        action="store_true",
        help="apply --admin/--email to an existing user (otherwise it is left unchanged)",
    )
    create.set_defaults(func=_token_create)
    listing = token_commands.add_parser("list", help="list tokens (never shows a token)")
    listing.add_argument("--user", help="only this user's tokens")
    listing.set_defaults(func=_token_list)
    revoke = token_commands.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id", type=int, help="the ID column of `reportctl token list`")
    revoke.set_defaults(func=_token_revoke)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply Alembic migrations")
    upgrade.add_argument("revision", nargs="?", default="heads")
    upgrade.set_defaults(func=_db_upgrade)

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument(
        "--workers",
        type=_workers,
        metavar="N",
        help="API processes sharing the port (default API_WORKERS, 1); one of them runs the "
        "embedded executor's LOCAL_WORKERS processes and the relay",
    )
    serve.set_defaults(func=_serve)

    from app.cli_submit import add_submit_parser

    add_submit_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
