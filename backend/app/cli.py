"""`reportctl`: the management command line.

reportctl token create NAME [--admin]   print a new API token (only the token, on stdout)
reportctl db upgrade                    apply migrations
reportctl serve [--host H] [--port P]   run the API (embedded executor included)
reportctl submit pdf|excel|analysis --rows N [--wait] [--out FILE]
                                        post a heavy report, show progress, save the file
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _token_create(args: argparse.Namespace) -> int:
    from app.db.session import session_scope
    from app.users.store import create_token

    with session_scope() as session:
        token = create_token(session=session, name=args.name, admin=args.admin, email=args.email)
    print(token)
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
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=args.host or settings.HOST,
        port=args.port or settings.PORT,
        log_level=settings.LOG_LEVEL.lower(),
    )
    return 0


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
    create.set_defaults(func=_token_create)

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_commands.add_parser("upgrade", help="apply Alembic migrations")
    upgrade.add_argument("revision", nargs="?", default="heads")
    upgrade.set_defaults(func=_db_upgrade)

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=_serve)

    from app.cli_submit import add_submit_parser

    add_submit_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
