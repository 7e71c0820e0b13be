"""A storage outage during a batch fails no job: the artifact's store is part of the attempt
and retries with the policy's backoff. Afterwards every job has exactly one object, the
completing attempt's, whose bytes are the row's. Real worker processes (the embedded
executor), PostgreSQL; a `file://` store made unwritable, and S3 (moto_server) behind a
proxy that stops answering."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.jobs.models import ReportJob
from tests.conftest import Service, running_service
from tests.faults import FlakyProxy, attempts_histogram, read_jobs, unwritable, wait_final
from tests.s3 import MotoServer

USERS, JOBS_EACH = 6, 4  # several owners: each has only a few jobs with the workers at once
# Retries at +1, +2, +4 s: four attempts outlast the outages (the default policy's minutes
# outlast far longer ones).
POLICY = {"LOCAL_WORKERS": 2, "JOB_RETRY_BACKOFF_SECONDS": 1.0}


def _submit(service: Service) -> list[str]:
    owners = [service.headers(service.token()) for _ in range(USERS)]
    ids = []
    for _ in range(JOBS_EACH):
        for headers in owners:
            body = {"delay_seconds": 0.1}
            response = service.client.post("/reports/dummy", json=body, headers=headers)
            assert response.status_code == 202, response.text
            ids.append(response.json()["job_id"])
    return ids


def _outage(service: Service, ids: list[str], started: float, seconds: float) -> int:
    """Keep the outage for `seconds`, and on until it has made a few attempts retry (at
    most 20 s); how many jobs it hit."""
    hit: set[str] = set()
    while time.monotonic() - started < 20:
        rows = read_jobs(service.settings.DATABASE_URL, ids).values()
        hit |= {r.id for r in rows if r.status == "retrying"}
        if len(hit) >= 3 and time.monotonic() - started >= seconds:
            break
        time.sleep(0.1)
    return len(hit)


def _check_batch(
    service: Service, ids: list[str], objects: Callable[[str], dict[str, bytes]]
) -> dict[str, ReportJob]:
    rows = wait_final(service.settings.DATABASE_URL, ids, timeout=60)
    failed = {r.id: r.error for r in rows.values() if r.status != "completed"}
    assert not failed, failed
    for job in rows.values():
        stored = objects(job.id)  # key -> bytes, everything under artifacts/<job_id>/
        key = f"artifacts/{job.id}/{job.attempts}/dummy-report.json"
        assert list(stored) == [key] and job.artifact_path == key, (job.attempts, stored)
        assert hashlib.sha256(stored[key]).hexdigest() == job.artifact_sha256
        assert json.loads(stored[key])["attempt"] == job.attempts  # written once, by the winner
        for entry in job.history[:-1]:
            assert entry["outcome"] == "retrying" and "storage unavailable" in entry["error"]
    assert not list(service.settings.scratch_dir.glob("*-*-*"))  # no attempt left files
    return rows


def test_an_unwritable_file_store_fails_no_job(tmp_path: Path) -> None:
    with running_service("postgresql", tmp_path, **POLICY) as service:
        root = service.settings.storage_root
        with unwritable(root / "artifacts"):
            started = time.monotonic()
            ids = _submit(service)
            hit = _outage(service, ids, started, 3.0)

        def objects(job_id: str) -> dict[str, bytes]:
            folder = root / "artifacts" / job_id
            return {
                p.relative_to(root).as_posix(): p.read_bytes()
                for p in folder.rglob("*")
                if p.is_file()
            }

        rows = _check_batch(service, ids, objects)
        histogram = attempts_histogram(rows)
        print(f"file store unwritable, {hit} jobs hit: attempts {histogram}")
        assert hit >= 3 and max(histogram) > 1


@pytest.fixture
def flaky_s3() -> Iterator[tuple[MotoServer, FlakyProxy, str]]:
    server = MotoServer()
    proxy = FlakyProxy(server.port)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in {**server.env, "AWS_ENDPOINT_URL": proxy.url}.items():
                patch.setenv(name, value)  # inherited by the embedded worker processes
            yield server, proxy, server.new_bucket()
    finally:
        proxy.down()
        server.stop()


def test_an_object_store_that_stops_answering_fails_no_job(
    tmp_path: Path, flaky_s3: tuple[MotoServer, FlakyProxy, str]
) -> None:
    server, proxy, bucket = flaky_s3
    with running_service(
        "postgresql", tmp_path, STORAGE_URL=f"s3://{bucket}/svc", **POLICY
    ) as service:
        proxy.down()
        try:
            started = time.monotonic()
            ids = _submit(service)
            # Longer than boto3's own retries of one call (four tries, about 7 s at most).
            hit = _outage(service, ids, started, 8.0)
        finally:
            proxy.up()
        client = server.client()

        def objects(job_id: str) -> dict[str, bytes]:
            listed = client.list_objects_v2(Bucket=bucket, Prefix=f"svc/artifacts/{job_id}/")
            keys = [item["Key"] for item in listed.get("Contents", [])]
            return {
                key.removeprefix("svc/"): client.get_object(Bucket=bucket, Key=key)["Body"].read()
                for key in keys
            }

        rows = _check_batch(service, ids, objects)
        histogram = attempts_histogram(rows)
        print(f"object store down, {hit} jobs hit: attempts {histogram}")
        assert hit >= 3 and max(histogram) > 1
