"""`reportctl`: token creation prints only the token; migrations apply from the CLI."""

from __future__ import annotations

import os
from pathlib import Path

from tests.server import reportctl


def test_token_create_prints_only_the_token(tmp_path: Path) -> None:
    env = {**os.environ, "VAR_DIR": str(tmp_path), "DATABASE_URL": ""}
    env.pop("DATABASE_URL")
    reportctl("db", "upgrade", env=env)
    assert (tmp_path / "reports.db").is_file()
    out = reportctl("token", "create", "alice", env=env)
    assert out.endswith("\n") and out.count("\n") == 1
    token = out.strip()
    assert token.startswith("rjs_") and len(token) > 40
    admin = reportctl("token", "create", "root", "--admin", env=env).strip()
    assert admin != token
    # The database holds digests, never the token itself.
    assert token.encode() not in (tmp_path / "reports.db").read_bytes()
