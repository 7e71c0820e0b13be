"""Submissions arriving together are written together (`app/api/submits.py`): a burst shares
commits, each submission keeps its own answer (202, 401, 429), a quota holds exactly within
a burst, and a batch whose transaction fails is written again one by one."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select

from app.api import submits
from app.core.config import set_settings
from app.db.session import get_engine, session_scope
from app.jobs.models import ReportJob
from app.jobs.submit import Accepted, JobOrder
from tests.conftest import Service, running_service

BURST = 48


def _burst(service: Service, requests: list[tuple[dict[str, str], dict[str, Any]]]) -> list[Any]:
    """POST /reports/dummy for each (headers, body) at once: one thread each, all into the
    service's one event loop."""

    def post(request: tuple[dict[str, str], dict[str, Any]]) -> Any:
        headers, body = request
        return service.client.post("/reports/dummy", headers=headers, json=body)

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(post, requests))


@contextmanager
def _commits() -> Iterator[list[int]]:
    """Counts the commits of the API's engine meanwhile (the relay's passes included)."""
    engine = get_engine()
    counted = [0]

    def count(_connection: Any) -> None:
        counted[0] += 1

    event.listen(engine, "commit", count)
    try:
        yield counted
    finally:
        event.remove(engine, "commit", count)


def _rows(job_ids: list[str]) -> int:
    with session_scope() as session:
        query = select(func.count()).where(ReportJob.id.in_(job_ids))
        return int(session.scalar(query) or 0)


def test_a_burst_shares_commits(service: Service) -> None:
    set_settings(service.settings)
    headers = service.headers(service.token())
    with _commits() as commits:
        responses = _burst(service, [(headers, {"delay_seconds": 0})] * BURST)
    assert [response.status_code for response in responses] == [202] * BURST
    job_ids = {response.json()["job_id"] for response in responses}
    assert len(job_ids) == BURST
    assert _rows(sorted(job_ids)) == BURST
    # One commit per submission without batching; with it, one per batch.
    assert commits[0] <= BURST // 2, commits[0]
    for job_id in list(job_ids)[:3]:
        assert service.wait(job_id, headers)["status"] == "completed"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    with running_service(
        "sqlite", tmp_path_factory.mktemp("batch-quota"), QUOTA_QUEUED_JOBS=4, LOCAL_WORKERS=1
    ) as service:
        yield service


def test_each_submission_keeps_its_answer(limited: Service) -> None:
    """In one burst: a user over QUOTA_QUEUED_JOBS gets exactly 4 accepted, a bad token its
    401, another user their 202. The jobs sleep, so none ends during the burst."""
    set_settings(limited.settings)
    greedy = limited.headers(limited.token())
    other = limited.headers(limited.token())
    wrong = limited.headers("not-a-token")
    slow = {"delay_seconds": 3}
    requests = [(greedy, slow)] * 12 + [(wrong, slow), (other, slow)]
    responses = _burst(limited, requests)
    greedy_codes = sorted(response.status_code for response in responses[:12])
    assert greedy_codes == [202] * 4 + [429] * 8
    refused = next(response for response in responses[:12] if response.status_code == 429)
    assert "QUOTA_QUEUED_JOBS" in refused.json()["detail"]
    assert responses[12].status_code == 401
    assert "Invalid or revoked token" in responses[12].json()["detail"]
    assert responses[13].status_code == 202


def test_a_failed_batch_is_written_one_by_one(service: Service) -> None:
    """One submission's parameters cannot be stored (not JSON): its batch's INSERT fails,
    and the batch is written again submission by submission, so only that one fails."""
    set_settings(service.settings)
    token = service.token()

    async def burst() -> list[Accepted | BaseException]:
        good = [submits.submit_in_batch(token, submits.order("dummy", {})) for _ in range(5)]
        bad = submits.submit_in_batch(token, lambda _s, user: JobOrder(user, "dummy", {"x": {1}}))
        return await asyncio.gather(*good[:2], bad, *good[2:], return_exceptions=True)

    outcomes = asyncio.run(burst())
    accepted = [outcome for outcome in outcomes if isinstance(outcome, Accepted)]
    assert len(accepted) == 5
    assert isinstance(outcomes[2], Exception) and "not JSON serializable" in str(outcomes[2])
    assert _rows([job.job_id for job in accepted]) == 5
