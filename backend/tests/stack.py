"""A whole deployment in one test module: private Redis, real Celery worker, the API."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.core.config import Settings, set_settings
from app.main import create_app
from tests.conftest import Service, fresh_database, make_settings
from tests.infra import RedisServer, WorkerProcess, service_env


@dataclass
class Stack:
    service: Service
    redis: RedisServer
    env: dict[str, str]
    var_dir: Path
    workers: list[WorkerProcess] = field(default_factory=list)

    def worker(
        self, *args: str, name: str = "worker", ready: str = "ready.", **env: str
    ) -> WorkerProcess:
        worker = WorkerProcess(
            list(args), {**self.env, **env}, self.var_dir / f"{name}.log", ready_marker=ready
        )
        self.workers.append(worker)
        return worker


def stack_settings_env(
    var_dir: Path, database_url: str, redis: RedisServer, **overrides: Any
) -> dict[str, str]:
    values = {
        "ENVIRONMENT": "test",
        "VAR_DIR": str(var_dir),
        "DATABASE_URL": database_url,
        "JOB_BACKEND": "auto",
        "CELERY_BROKER_URL": redis.url(0),
        "CELERY_RESULT_BACKEND": redis.url(1),
        "RQ_REDIS_URL": redis.url(2),
        "LOCAL_WORKERS": "2",
        "LOG_LEVEL": "INFO",
    }
    values.update({k: str(v) for k, v in overrides.items()})
    return values


@contextmanager
def running_stack(var_dir: Path, db_kind: str = "sqlite", **overrides: Any) -> Iterator[Stack]:
    redis = RedisServer(var_dir)
    redis.start()
    database = fresh_database(db_kind, var_dir)
    values = stack_settings_env(var_dir, database.url, redis, **overrides)
    settings = make_settings(
        var_dir,
        database.url,
        **{k: v for k, v in values.items() if k not in ("VAR_DIR", "DATABASE_URL")},
    )
    stack: Stack | None = None
    try:
        with TestClient(create_app(settings)) as client:
            stack = Stack(
                service=Service(client=client, settings=settings, db_kind=db_kind),
                redis=redis,
                env=service_env(values),
                var_dir=var_dir,
            )
            yield stack
    finally:
        if stack is not None:
            for worker in stack.workers:
                worker.stop()
        redis.stop()
        set_settings(None)
        if database.drop:
            database.drop()


def use(settings: Settings) -> None:
    set_settings(settings)
