"""The Celery task wrapper: a database outage keeps the message alive (unit test, one function)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from app.jobs.runner import RunOutcome
from app.services import task_base


class _Retry(Exception):
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class _Task:
    """Stands in for a bound Celery task: records what `retry` was asked."""

    def __init__(self, retries: int) -> None:
        self.request = SimpleNamespace(retries=retries)

    def retry(self, **kwargs: Any) -> _Retry:
        return _Retry(**kwargs)


def test_database_error_is_retried_with_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    def down(job_id: str) -> RunOutcome:
        raise OperationalError("UPDATE report_jobs ...", {}, ConnectionError("server closed"))

    monkeypatch.setattr(task_base, "run_job", down)
    for retries, countdown in [(0, 1), (3, 8), (10, task_base.DB_RETRY_MAX_SECONDS)]:
        with pytest.raises(_Retry) as raised:
            task_base.execute(_Task(retries), "job-1")  # type: ignore[arg-type]
        assert raised.value.kwargs["countdown"] == countdown
        assert raised.value.kwargs["max_retries"] is None


def test_retrying_outcome_becomes_a_delayed_redelivery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        task_base, "run_job", lambda job_id: RunOutcome(status="retrying", retry_in=120.0)
    )
    with pytest.raises(_Retry) as raised:
        task_base.execute(_Task(0), "job-1")  # type: ignore[arg-type]
    assert raised.value.kwargs["countdown"] == 120.0
