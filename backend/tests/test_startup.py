"""Start-up: paths anchored at the project root, the deployment line without secrets, and a
Celery worker or beat refusing a broker no API publishes to."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.core import startup
from app.core.config import PROJECT_ROOT, Settings, anchored
from app.core.startup import broker_refusal, describe_deployment, mask_url

BACKEND_DIR = Path(__file__).resolve().parents[1]
SECRET = "s3cr3t-Pa55"


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting from the environment (CI may export some)."""
    for key in list(os.environ):
        if key.upper() in Settings.model_fields or key.startswith(("AWS_", "STORAGE_")):
            monkeypatch.delenv(key)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{SECRET}@redis:6379/0", "redis://:***@redis:6379/0"),
        (
            f"rediss://default:{SECRET}@cache.example:6380/1",
            "rediss://default:***@cache.example:6380/1",
        ),
        (
            f"postgresql+psycopg://reports:{SECRET}@db.internal:5432/reports",
            "postgresql+psycopg://reports:***@db.internal:5432/reports",
        ),
        # A password holding "@", "/" or "#" is hidden whole.
        (f"redis://:{SECRET}@/#x@redis:6379/0", "redis://:***@redis:6379/0"),
        (
            f"postgresql://u@h/db?password={SECRET}&sslmode=require",
            "postgresql://u@h/db?password=***&sslmode=require",
        ),
        (
            f"redis://:{SECRET}@a:6379/0;redis://:{SECRET}@b:6379/0",
            "redis://:***@a:6379/0;redis://:***@b:6379/0",
        ),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("sqlite:////srv/var/reports.db", "sqlite:////srv/var/reports.db"),
        ("", ""),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert SECRET not in mask_url(url)


def test_deployment_line_names_everything_and_no_secret(
    no_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio:9000")
    settings = _settings(
        ENVIRONMENT="dev",
        DATABASE_URL=f"postgresql+psycopg://reports:{SECRET}@postgres:5432/reports",
        CELERY_BROKER_URL=f"redis://:{SECRET}@redis:6379/0",
        RQ_REDIS_URL=f"redis://:{SECRET}@redis:6379/2",
        SMTP_PASSWORD=SECRET,
        FLOWER_PASSWORD=SECRET,
    )
    line = describe_deployment(settings, "celery worker")
    assert SECRET not in line
    assert line.startswith("celery worker starting")
    assert "database=postgresql+psycopg://reports:***@postgres:5432/reports" in line
    assert "celery=redis://:***@redis:6379/0" in line and "rq=redis://:***@redis:6379/2" in line
    storage = getattr(settings, "STORAGE_URL", None) or str(settings.storage_root)
    assert f"storage={mask_url(str(storage))}" in line


def test_embedded_line(no_env: None, tmp_path: Path) -> None:
    line = describe_deployment(_settings(ENVIRONMENT="dev", VAR_DIR=tmp_path), "api")
    assert f"database=sqlite:///{tmp_path.resolve()}/reports.db" in line
    assert "broker=none (embedded executor)" in line


def test_api_logs_its_deployment(
    no_env: None, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(ENVIRONMENT="test", VAR_DIR=tmp_path, LOCAL_WORKERS=0, JOB_BACKEND="local")
    with caplog.at_level("INFO", logger="app.startup"):
        startup.log_deployment(settings, "api")
    assert any(r.getMessage().startswith("api starting") for r in caplog.records)


@pytest.mark.parametrize("broker", ["", "memory://", "  memory://localhost/  "])
def test_worker_and_beat_refuse_a_memory_broker(no_env: None, broker: str) -> None:
    reason = broker_refusal(_settings(ENVIRONMENT="dev", CELERY_BROKER_URL=broker))
    assert reason and "CELERY_BROKER_URL" in reason
    with pytest.raises(SystemExit, match="CELERY_BROKER_URL"):
        startup.require_broker(_settings(ENVIRONMENT="dev", CELERY_BROKER_URL=broker))
    # The test profile runs Celery in memory on purpose.
    assert broker_refusal(_settings(ENVIRONMENT="test", CELERY_BROKER_URL=broker)) is None


def test_a_real_broker_is_accepted(no_env: None) -> None:
    assert (
        broker_refusal(_settings(ENVIRONMENT="dev", CELERY_BROKER_URL="redis://r:6379/0")) is None
    )


def _no_settings_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.upper() not in Settings.model_fields}
    return {**env, **extra}


@pytest.mark.parametrize("command", ["worker", "beat"])
def test_celery_started_directly_refuses_a_memory_broker(command: str, tmp_path: Path) -> None:
    """`celery -A app.core.celery_app worker|beat`, not through celery_manager.py."""
    env = _no_settings_env(ENVIRONMENT="dev", VAR_DIR=str(tmp_path))
    argv = [sys.executable, "-m", "celery", "-A", "app.core.celery_app", command]
    if command == "beat":
        argv += ["--schedule", str(tmp_path / "schedule")]
    done = subprocess.run(
        argv, cwd=BACKEND_DIR, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0, done.stdout[-2000:]
    assert "CELERY_BROKER_URL" in done.stderr + done.stdout


@pytest.mark.parametrize("command", [["worker", "reports", "1"], ["beat"]])
def test_celery_manager_refuses_a_memory_broker(command: list[str], tmp_path: Path) -> None:
    env = _no_settings_env(ENVIRONMENT="dev", VAR_DIR=str(tmp_path))
    done = subprocess.run(
        [sys.executable, str(BACKEND_DIR / "celery_manager.py"), *command],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "set CELERY_BROKER_URL" in done.stderr.replace("Set", "set")


def test_relative_paths_are_anchored_at_the_project_root(
    no_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cd backend && celery_manager.py status` and `make run` open the same SQLite file."""
    root = BACKEND_DIR.parent
    assert root == PROJECT_ROOT
    monkeypatch.chdir(tmp_path)
    settings = _settings(ENVIRONMENT="dev")
    assert root / "var" == settings.VAR_DIR
    assert f"sqlite:///{root / 'var' / 'reports.db'}" == settings.DATABASE_URL
    assert settings.storage_root == root / "var" / "storage"
    monkeypatch.chdir(BACKEND_DIR)
    assert _settings(ENVIRONMENT="dev").DATABASE_URL == settings.DATABASE_URL
    assert root / "data" == _settings(ENVIRONMENT="dev", VAR_DIR="data").VAR_DIR
    assert anchored(tmp_path / "x") == (tmp_path / "x").resolve()
