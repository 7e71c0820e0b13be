"""Shared fixtures: a real service (embedded executor, real worker processes) per database.

Fixtures:
- `service` (module scope, parametrized over SQLite and PostgreSQL): `.client` (TestClient
  with the lifespan running, so local worker processes run jobs), `.settings`,
  `.token(admin=False)` -> a new user's token, `.headers(token)`, `.wait(job_id, headers)`.
- `api` / `auth` / `other_auth`: shortcuts for one test (client, headers of two users).
- `database_url` (function scope, both databases): an empty migrated database.
PostgreSQL is used when it answers at TEST_POSTGRES_URL; elsewhere those cases skip, except
with CI=true, where a missing PostgreSQL fails the run.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.core.config import Settings, set_settings
from app.db import migrations
from app.db.session import session_scope
from app.main import create_app
from app.users.store import create_token

if TYPE_CHECKING:
    from tests.infra import RedisServer  # infra imports this module

logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll drowns the failures

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
DATABASES = ["sqlite", "postgresql"]
FINAL = {"completed", "failed", "cancelled"}


def require(condition: bool, reason: str) -> None:
    """Skip with `reason`, except in CI where the missing piece is a failure."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def _postgres_available() -> bool:
    try:
        engine = create_engine(POSTGRES_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


_PG_OK: bool | None = None


def postgres_or_skip() -> None:
    global _PG_OK
    if _PG_OK is None:
        _PG_OK = _postgres_available()
    require(
        _PG_OK,
        f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: store and API tests run on "
        "SQLite only (set TEST_POSTGRES_URL to include PostgreSQL)",
    )


def _admin_exec(sql: str) -> None:
    engine = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(sql))
    engine.dispose()


@dataclass
class FreshDatabase:
    url: str
    drop: Any = field(repr=False, default=None)


def fresh_database(kind: str, directory: Path, *, migrate: bool = True) -> FreshDatabase:
    """An empty database of `kind`; migrated unless told otherwise."""
    if kind == "sqlite":
        url = f"sqlite:///{directory / 'reports.db'}"
        drop = None
    else:
        postgres_or_skip()
        name = f"rjs_test_{uuid.uuid4().hex[:12]}"
        _admin_exec(f'CREATE DATABASE "{name}"')
        url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"

        def drop() -> None:
            from app.db.session import forget_engines

            forget_engines(url)
            _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    if migrate:
        migrations.upgrade(url)
    return FreshDatabase(url=url, drop=drop)


def make_settings(var_dir: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "ENVIRONMENT": "test",
        "VAR_DIR": var_dir,
        "DATABASE_URL": database_url,
        "JOB_BACKEND": "local",
        "CELERY_BROKER_URL": "",
        "CELERY_RESULT_BACKEND": "",
        "RQ_REDIS_URL": "",
        "LOCAL_WORKERS": 2,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Service:
    client: TestClient
    settings: Settings
    db_kind: str

    def token(self, *, admin: bool = False, email: str | None = None) -> str:
        with session_scope() as session:
            return create_token(
                session=session, name=f"user-{uuid.uuid4().hex[:10]}", admin=admin, email=email
            )

    @staticmethod
    def headers(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    def wait(
        self,
        job_id: str,
        headers: dict[str, str],
        *,
        statuses: set[str] = FINAL,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Poll the status route until the job reaches one of `statuses`."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            response = self.client.get(f"/reports/jobs/{job_id}", headers=headers)
            assert response.status_code == 200, response.text
            body = response.json()
            if body["status"] in statuses:
                return body
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} did not reach {statuses} in {timeout}s: {body}")


@contextmanager
def running_service(kind: str, var_dir: Path, **overrides: Any) -> Iterator[Service]:
    """The API in-process (TestClient, so its local workers and relay run) on a fresh database
    of `kind`, with settings `overrides` for a module that needs them."""
    database = fresh_database(kind, var_dir)
    settings = make_settings(var_dir, database.url, **overrides)
    app = create_app(settings)
    try:
        with TestClient(app) as client:
            yield Service(client=client, settings=settings, db_kind=kind)
    finally:
        set_settings(None)
        if database.drop:
            database.drop()


@pytest.fixture(scope="module", params=DATABASES)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    with running_service(request.param, tmp_path_factory.mktemp(f"svc-{request.param}")) as svc:
        yield svc


@pytest.fixture
def api(service: Service) -> TestClient:
    set_settings(service.settings)
    return service.client


@pytest.fixture
def auth(service: Service) -> dict[str, str]:
    return service.headers(service.token())


@pytest.fixture
def other_auth(service: Service) -> dict[str, str]:
    return service.headers(service.token())


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty, migrated database of each kind, with this process's settings pointed at it."""
    database = fresh_database(request.param, tmp_path)
    set_settings(make_settings(tmp_path, database.url))
    try:
        yield database.url
    finally:
        set_settings(None)
        if database.drop:
            database.drop()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server for the module (skips, or fails in CI, without the binary)."""
    from tests.infra import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
