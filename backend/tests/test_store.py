"""The job store and state machine, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from app.core.config import get_settings, set_settings
from app.core.security import hash_token
from app.db.base import utcnow
from app.db.session import session_scope
from app.jobs import fairness, followups
from app.jobs.dispatch import Dispatcher, set_dispatcher
from app.jobs.models import ReportJob
from app.jobs.relay import relay_once
from app.jobs.runner import run_job
from app.jobs.states import ALLOWED, IllegalTransition, JobStatus, check
from app.jobs.store import reads, rows, sweeps, worker
from app.jobs.store.transitions import transition
from app.users.models import ApiToken, User
from app.users.store import create_token, user_for_token

S = JobStatus


def _new_job(
    fail_times: int = 0, status: JobStatus = S.QUEUED, *, email: str | None = None, **params: str
) -> str:
    with session_scope() as session:
        user = User(name=f"u-{utcnow().timestamp()}", email=email)
        session.add(user)
        session.flush()
        job = rows.create_job(
            session=session,
            owner=user,
            job_type="dummy",
            params={"delay_seconds": 0, "fail_times": fail_times, **params},
            max_attempts=get_settings().max_attempts,
        )
        job.status = status
        return job.id


def _job(job_id: str) -> ReportJob:
    with session_scope() as session:
        job = session.get(ReportJob, job_id)
        assert job is not None
        return job


def test_final_states_have_no_exit() -> None:
    for final in (S.COMPLETED, S.FAILED, S.CANCELLED):
        assert ALLOWED[final] == frozenset()
        with pytest.raises(IllegalTransition):
            check(final, S.STARTED)


def test_illegal_transition_is_refused_before_touching_the_row(database_url: str) -> None:
    job_id = _new_job()
    with session_scope() as session, pytest.raises(IllegalTransition):
        transition(session, job_id, source=[S.COMPLETED], target=S.QUEUED)
    assert _job(job_id).status == S.QUEUED


def test_transition_is_compare_and_set(database_url: str) -> None:
    job_id = _new_job()
    with session_scope() as session:
        assert transition(session, job_id, source=[S.QUEUED], target=S.CANCELLED)
        assert not transition(session, job_id, source=[S.QUEUED], target=S.STARTED)
    assert _job(job_id).status == S.CANCELLED


def test_only_one_claim_wins(database_url: str) -> None:
    job_id = _new_job()
    assert worker.claim(job_id=job_id, worker="a", stale_after=60)
    assert worker.claim(job_id=job_id, worker="b", stale_after=60) is None
    job = _job(job_id)
    assert (job.status, job.attempts, job.worker) == (S.STARTED, 1, "a")


def test_stale_started_job_can_be_taken_over(database_url: str) -> None:
    job_id = _new_job()
    worker.claim(job_id=job_id, worker="dead", stale_after=0)
    assert worker.claim(job_id=job_id, worker="b", stale_after=60) is None
    taken = worker.claim(job_id=job_id, worker="b", stale_after=-1)
    assert taken is not None and taken.attempts == 2


def test_run_job_twice_runs_once_and_writes_one_artifact(database_url: str) -> None:
    job_id = _new_job()
    first = run_job(job_id)
    second = run_job(job_id)
    assert (first.status, second.status) == ("completed", "skipped")
    job = _job(job_id)
    assert job.status == S.COMPLETED and job.attempts == 1
    folder = get_settings().storage_root / "artifacts" / job_id
    files = [f for f in folder.rglob("*") if f.is_file()]  # the attempt's own key
    assert [f.relative_to(folder).as_posix() for f in files] == ["1/dummy-report.json"]
    assert job.artifact_size == files[0].stat().st_size
    assert job.artifact_sha256 and len(job.artifact_sha256) == 64


def test_cancelled_job_is_never_run(database_url: str) -> None:
    job_id = _new_job()
    with session_scope() as session:
        reads.cancel_job(session=session, job=session.get(ReportJob, job_id))  # type: ignore[arg-type]
    assert run_job(job_id).status == "skipped"
    assert _job(job_id).status == S.CANCELLED


def test_retry_waits_for_its_backoff(database_url: str) -> None:
    # A backoff no slow moment of the machine can outlast (the test profile's is 0.2 s).
    set_settings(get_settings().model_copy(update={"JOB_RETRY_BACKOFF_SECONDS": 30.0}))
    job_id = _new_job(fail_times=1)
    outcome = run_job(job_id)
    assert outcome.status == "retrying"
    assert outcome.retry_in == get_settings().retry_delay(1)
    job = _job(job_id)
    assert job.status == S.RETRYING and job.next_attempt_at is not None
    assert "simulated transient failure" in (job.error or "")
    # A delivery that arrives before the backoff is over is refused, not run early.
    assert run_job(job_id).status == "skipped"


def test_reaper_requeues_then_fails_poison_jobs(database_url: str) -> None:
    job_id = _new_job()
    max_attempts = get_settings().max_attempts
    for attempt in range(1, max_attempts + 1):
        job = worker.claim(job_id=job_id, worker="w", stale_after=0)
        assert job is not None and job.attempts == attempt
        with session_scope() as session:
            requeued, failed = sweeps.requeue_stale(session=session, stale_after=-1)
        if attempt < max_attempts:
            assert (requeued, failed) == ([job_id], [])
            assert _job(job_id).status == S.QUEUED
        else:
            assert (requeued, failed) == ([], [job_id])
    job = _job(job_id)
    assert job.status == S.FAILED
    assert "worker lost" in (job.error or "")


def test_tokens_are_stored_hashed(database_url: str) -> None:
    with session_scope() as session:
        token = create_token(session=session, name="hash-check")
    with session_scope() as session:
        stored = session.scalars(select(ApiToken.token_hash)).all()
        assert token not in stored
        assert hash_token(token) in stored
        user = user_for_token(session=session, token=token)
        assert user is not None and user.name == "hash-check"
        assert user_for_token(session=session, token=token + "x") is None


def test_storage_root_holds_no_client_paths(database_url: str, tmp_path: Path) -> None:
    from app.jobs.artifacts import resolve, safe_filename

    assert safe_filename("../../etc/passwd") == "passwd"
    with pytest.raises(ValueError):
        resolve(get_settings(), "../outside.txt")


def test_jobs_queued_on_brokers_are_the_lost_publish_candidates(database_url: str) -> None:
    with session_scope() as session:
        user = User(name="lost-publish")
        session.add(user)
        session.flush()
        jobs = {
            name: rows.create_job(
                session=session,
                owner=user,
                job_type="dummy",
                params={},
                max_attempts=4,
                queued_on=backend,
            ).id
            for name, backend in [("old", "celery"), ("fresh", "celery"), ("local", "local")]
        }
        old = utcnow() - timedelta(hours=2)
        for name in ("old", "local"):
            session.get(ReportJob, jobs[name]).queued_at = old  # type: ignore[union-attr]
    with session_scope() as session:
        found = sweeps.queued_on_brokers(session=session, older_than=3600, expired_after=3 * 3600)
    # Local jobs live in the database itself: nothing to re-send.
    assert found == [(jobs["old"], "celery", False)]


def _job_asking_for_a_notice(email: str | None) -> tuple[str, int]:
    job_id = _new_job(email=email, notify="email", title="Q3 sales")
    return job_id, _job(job_id).owner_id


def _notices(owner_id: int) -> list[ReportJob]:
    with session_scope() as session:
        return list(
            session.scalars(
                select(ReportJob).where(
                    ReportJob.owner_id == owner_id, ReportJob.job_type == "email"
                )
            )
        )


def test_the_report_ready_notice_is_queued_with_the_link(database_url: str) -> None:
    set_dispatcher(Dispatcher(get_settings()))
    try:
        job_id, owner_id = _job_asking_for_a_notice("owner@example.com")
        assert run_job(job_id).status == "completed"
    finally:
        set_dispatcher(None)
    (notice,) = _notices(owner_id)
    assert (notice.status, notice.backend) == (S.QUEUED, "local")
    assert notice.params["to"] == "owner@example.com"
    assert notice.params["context"]["title"] == "Q3 sales"
    link = notice.params["context"]["download_url"]
    assert link.startswith("http") and f"/reports/jobs/{job_id}/download?expires=" in link


def test_a_notice_survives_a_worker_dying_right_after_the_completion(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The notice row commits with the completion; its publish may be lost, not the notice."""
    dispatcher = Dispatcher(get_settings())
    set_dispatcher(dispatcher)
    try:
        # The worker is killed after its commit, before it publishes the notice.
        monkeypatch.setattr(followups, "publish", lambda job_id, notice_id: None)
        monkeypatch.setattr(fairness, "release_for_owner", lambda owner_id, settings: [])
        job_id, owner_id = _job_asking_for_a_notice("owner@example.com")
        assert run_job(job_id).status == "completed"
        (notice,) = _notices(owner_id)
        assert notice.status == S.PENDING  # in the outbox
        with session_scope() as session:
            row = session.get(ReportJob, notice.id)
            assert row is not None
            row.created_at = utcnow() - timedelta(minutes=1)  # past the outbox grace
        assert relay_once(get_settings(), dispatcher).published == [notice.id]
    finally:
        set_dispatcher(None)
    (notice,) = _notices(owner_id)
    assert (notice.status, notice.backend) == (S.QUEUED, "local")


def test_no_address_no_notice_and_the_report_still_completes(database_url: str) -> None:
    job_id, owner_id = _job_asking_for_a_notice(None)
    assert run_job(job_id).status == "completed"
    assert _notices(owner_id) == []
