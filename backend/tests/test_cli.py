"""`reportctl`: token creation prints only the token; migrations apply from the CLI."""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

from tests.server import BIN, reportctl


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


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "reportctl"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def _cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["VAR_DIR"] = str(tmp_path)
    reportctl("db", "upgrade", env=env)
    return env


def _user(tmp_path: Path, name: str) -> tuple[int, str | None]:
    with sqlite3.connect(tmp_path / "reports.db") as conn:
        row = conn.execute("SELECT is_admin, email FROM users WHERE name = ?", (name,)).fetchone()
    return int(row[0]), row[1]


def test_token_create_on_an_existing_user_changes_nothing_without_update(
    tmp_path: Path,
) -> None:
    env = _cli_env(tmp_path)
    reportctl("token", "create", "bob", "--email", "bob@example.com", env=env)
    again = _run("token", "create", "bob", "--admin", "--email", "evil@example.org", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("\n") == 1 and again.stdout.startswith("rjs_")
    assert "NOT changed" in again.stderr and "--update" in again.stderr
    assert "--admin" in again.stderr and "--email" in again.stderr
    assert _user(tmp_path, "bob") == (0, "bob@example.com")  # no promotion, no redirection

    updated = _run("token", "create", "bob", "--admin", "--update", env=env)
    assert updated.returncode == 0, updated.stderr
    assert "updated user 'bob'" in updated.stderr
    assert _user(tmp_path, "bob") == (1, "bob@example.com")


def test_token_list_and_revoke(tmp_path: Path) -> None:
    env = _cli_env(tmp_path)
    first = reportctl("token", "create", "carol", env=env).strip()
    second = _run("token", "create", "dave", "--admin", "--expires-in", "30d", env=env)
    assert second.returncode == 0 and "expires at" in second.stderr

    listing = reportctl("token", "list", env=env)
    lines = listing.splitlines()
    assert lines[0].split()[:3] == ["ID", "USER", "ADMIN"]
    assert "EXPIRES" in lines[0] and "REVOKED" in lines[0] and "LAST USED" in lines[0]
    assert len(lines) == 3
    assert first not in listing and second.stdout.strip() not in listing
    carol = next(line for line in lines if " carol " in line)
    dave = next(line for line in lines if " dave " in line)
    assert carol.split()[2] == "no" and dave.split()[2] == "yes"
    assert carol.rstrip().endswith("-")  # neither expiring nor revoked
    assert reportctl("token", "list", "--user", "dave", env=env).count("\n") == 2

    carol_id = carol.split()[0]
    assert reportctl("token", "revoke", carol_id, env=env).strip() == f"token {carol_id} revoked"
    assert "already revoked" in reportctl("token", "revoke", carol_id, env=env)
    carol = next(
        line for line in reportctl("token", "list", env=env).splitlines() if " carol " in line
    )
    assert not carol.rstrip().endswith(" -")

    missing = _run("token", "revoke", "9999", env=env)
    assert missing.returncode == 1 and "no token with id 9999" in missing.stderr
    bad = _run("token", "create", "erin", "--expires-in", "soon", env=env)
    assert bad.returncode == 2 and "invalid duration" in bad.stderr and not bad.stdout
