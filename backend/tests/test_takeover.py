"""A worker frozen past the heartbeat timeout (SIGSTOP), its job taken over by another, then
resumed (SIGCONT) while the new attempt still runs: the job completes once, the frozen
attempt is `superseded` (in the history, in its own metric, never as a final status) and
leaves the live attempt's files alone."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from app.jobs.models import ReportJob
from tests.conftest import Service, running_service
from tests.faults import read_jobs, wait_final
from tests.test_metrics import sample


def _until(what: str, check: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _row(service: Service, job_id: str) -> ReportJob:
    return read_jobs(service.settings.DATABASE_URL, [job_id])[job_id]


LABELS = {"job_type": "dummy", "queue": "reports"}


def _counts(service: Service) -> dict[str, float]:
    """This process's counts so far (earlier services of the run may have added to them)."""
    text = service.client.get("/metrics").text
    counts = {
        status: sample(text, "report_jobs_total", status=status, **LABELS)
        for status in ("completed", "cancelled", "failed")
    }
    counts["superseded"] = sample(text, "report_jobs_superseded_total", **LABELS)
    counts["active"] = sample(text, "report_jobs_active", **LABELS)
    return counts


def test_a_frozen_worker_resumed_after_takeover_counts_nothing_twice(tmp_path: Path) -> None:
    with running_service(
        "postgresql",
        tmp_path,
        LOCAL_WORKERS=2,
        JOB_HEARTBEAT_SECONDS=0.3,
        JOB_HEARTBEAT_TIMEOUT_SECONDS=2.0,
    ) as service:
        headers = service.headers(service.token())
        before = _counts(service)
        accepted = service.client.post("/reports/dummy", json={"delay_seconds": 6}, headers=headers)
        job_id = accepted.json()["job_id"]
        scratch = service.settings.scratch_dir

        _until("attempt 1 at work", lambda: _row(service, job_id).progress_percent > 0)
        first = _row(service, job_id)
        frozen = int(str(first.worker).rsplit(":", 1)[1])
        os.kill(frozen, signal.SIGSTOP)
        try:
            _until(
                "the takeover",
                lambda: (
                    _row(service, job_id).attempts == 2
                    and _row(service, job_id).status == "started"
                ),
            )
            _until("attempt 2 at work", lambda: bool(list(scratch.glob(f"{job_id}-2-*"))))
        finally:
            os.kill(frozen, signal.SIGCONT)

        def superseded() -> bool:
            history = _row(service, job_id).history or []
            return any(h["outcome"] == "superseded" for h in history)

        _until("the frozen attempt to notice", superseded, timeout=10)
        live = _row(service, job_id)
        assert (live.status, live.attempts) == ("started", 2), "attempt 2 must still be running"
        assert list(scratch.glob(f"{job_id}-2-*")), "the superseded attempt removed live files"
        assert not list(scratch.glob(f"{job_id}-1-*"))  # its own are gone

        job = wait_final(service.settings.DATABASE_URL, [job_id], timeout=30)[job_id]
        assert (job.status, job.attempts) == ("completed", 2), job.error
        outcomes = [(h["attempt"], h["outcome"]) for h in job.history]
        assert (1, "superseded") in outcomes and outcomes[-1:] == [(2, "completed")], outcomes
        assert sum(outcome == "completed" for _, outcome in outcomes) == 1

        # One final count for the job; the takeover under its own name.
        after = _counts(service)
        added = {name: after[name] - before[name] for name in after}
        assert added == {
            "completed": 1,
            "cancelled": 0,
            "failed": 0,
            "superseded": 1,
            "active": 0,
        }, added

        # The winner's artifact is intact: its own key, its bytes, the row's hash.
        root = service.settings.storage_root / "artifacts" / job_id
        stored = [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        assert (
            stored == ["2/dummy-report.json"]
            and job.artifact_path == f"artifacts/{job_id}/2/dummy-report.json"
        )
        download = service.client.get(f"/reports/jobs/{job_id}/download", headers=headers)
        assert download.status_code == 200
        assert json.loads(download.content)["attempt"] == 2
        assert hashlib.sha256(download.content).hexdigest() == job.artifact_sha256
        assert not list(scratch.glob(f"{job_id}-*"))
