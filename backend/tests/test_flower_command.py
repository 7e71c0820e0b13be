"""`celery_manager.py flower`: credentials never on the command line, and refused when Flower
would silently cut them (a ',' or ':' in them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

import celery_manager
from app.core.config import Settings

BACKEND_DIR = Path(__file__).resolve().parents[1]


def _settings(user: str, password: str, tmp_path: Path) -> Settings:
    return Settings(
        ENVIRONMENT="test",
        VAR_DIR=tmp_path,
        FLOWER_USER=user,
        FLOWER_PASSWORD=SecretStr(password),
        _env_file=None,  # type: ignore[call-arg]
    )


def test_flower_argv_has_no_password(tmp_path: Path) -> None:
    argv, env = celery_manager.flower_command(
        _settings("ops", "s3cret-pass", tmp_path), 5555, "127.0.0.1"
    )
    assert not any("s3cret-pass" in arg for arg in argv)
    assert not any("basic" in arg.lower() for arg in argv)
    assert "flower" in argv and "--port=5555" in argv and "--address=127.0.0.1" in argv
    assert env == {"FLOWER_BASIC_AUTH": "ops:s3cret-pass"}


@pytest.mark.parametrize(
    ("user", "password", "named"),
    [
        ("ops", "pass,word", "FLOWER_PASSWORD"),
        ("ops", "pass:word", "FLOWER_PASSWORD"),
        ("op,s", "password", "FLOWER_USER"),
        ("op:s", "password", "FLOWER_USER"),
    ],
)
def test_flower_refuses_credentials_flower_would_cut(
    user: str, password: str, named: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=named):
        celery_manager.flower_command(_settings(user, password, tmp_path), 5555, "127.0.0.1")


def test_flower_command_exits_non_zero_on_a_comma(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "VAR_DIR": str(tmp_path),
        "ENVIRONMENT": "test",
        "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
        "FLOWER_USER": "ops",
        "FLOWER_PASSWORD": "first,second",
    }
    done = subprocess.run(
        [sys.executable, str(BACKEND_DIR / "celery_manager.py"), "flower", "5555"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "must not contain ','" in done.stderr
    assert "first" not in done.stderr  # the refusal does not echo the secret
