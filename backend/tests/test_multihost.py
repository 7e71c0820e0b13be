"""Several hosts on one machine: the API and two Celery worker hosts, each with a scratch
directory of its own, sharing only PostgreSQL, a private Redis and the object store.

Nothing a job reads or writes may live on the disk of the process that made it: uploads,
datasets, documents and artifacts go through the store (`STORAGE_URL`), the mail ledger is
in the database. The whole module runs twice: on a real S3 server (`moto_server`) and on a
`file://` store.
"""

from __future__ import annotations

import io
import os
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import openpyxl
import pypdf
import pytest
from sqlalchemy import update

from app.db.base import utcnow
from app.db.session import session_scope
from app.jobs.models import ReportJob
from app.storage import ObjectStore, open_store
from tests.infra import WorkerProcess
from tests.s3 import MotoServer
from tests.stack import Stack, running_stack
from tests.test_documents import need_tesseract, png_bytes
from tests.test_notifications import SmtpServer, running_smtp

HOSTS = ("host-a", "host-b")
QUEUES = "reports,documents,notifications,celery"
BULK_RECIPIENTS = 500


@dataclass
class Cluster:
    stack: Stack
    store: ObjectStore
    smtp: SmtpServer
    hosts: dict[str, WorkerProcess]
    scratch: dict[str, Path]

    @property
    def auth(self) -> dict[str, str]:
        return self.stack.service.headers(self.stack.service.token())

    def wait(self, job_id: str, auth: dict[str, str], timeout: float = 120) -> dict[str, Any]:
        return self.stack.service.wait(job_id, auth, timeout=timeout)

    def host_of(self, pid: int) -> str:
        """The worker host whose process tree holds `pid`."""
        for name, worker in self.hosts.items():
            if worker.proc is not None and pid in (worker.proc.pid, *worker.children()):
                return name
        raise AssertionError(f"pid {pid} belongs to no worker host")


@pytest.fixture(scope="module", params=["s3", "file"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp(f"hosts-{request.param}")
    aws: dict[str, str] = {}
    moto: MotoServer | None = None
    if request.param == "s3":
        moto = MotoServer()
        moto.client().create_bucket(Bucket="reports")
        aws = moto.env
        storage_url = "s3://reports/multihost"
    else:
        storage_url = f"file://{base / 'object-store'}"
    (base / "api-host").mkdir()
    patch = pytest.MonkeyPatch()
    for key, value in aws.items():
        patch.setenv(key, value)  # boto3 in the API process reads its own environment
    try:
        with (
            running_smtp() as smtp,
            running_stack(
                base / "api-host",
                "postgresql",
                STORAGE_URL=storage_url,
                SMTP_HOST="127.0.0.1",
                SMTP_PORT=smtp.port,
                MAIL_RATE_PER_SECOND=150,
                MAIL_BATCH_SIZE=25,
                MAIL_ALLOWED_DOMAINS="example.com",
                LOCAL_WORKERS=0,
            ) as stack,
        ):
            hosts, scratch = {}, {}
            for name in HOSTS:
                var_dir = base / name
                var_dir.mkdir()
                scratch[name] = var_dir / "scratch"
                hosts[name] = stack.worker(
                    "worker", QUEUES, "2", name=name, VAR_DIR=str(var_dir), **aws
                )
                hosts[name].start()
            yield Cluster(stack, open_store(storage_url), smtp, hosts, scratch)
    finally:
        patch.undo()
        if moto is not None:
            moto.stop()


def _upload_dataset(cluster: Cluster, auth: dict[str, str]) -> str:
    lines = ["day,region,product,revenue,units"]
    lines += [
        f"2026-0{1 + i % 9}-{1 + i % 28:02d},{['north', 'south', 'east', 'west'][i % 4]},"
        f"p{i % 7},{(i * 37) % 1000 + 0.5},{i % 13}"
        for i in range(4000)
    ]
    response = cluster.stack.service.client.post(
        "/datasets",
        files={"file": ("sales.csv", "\n".join(lines).encode(), "text/csv")},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["dataset_id"])


def _ran_on_a_worker_host(cluster: Cluster, job: dict[str, Any]) -> str:
    worker = job["history"][-1]["worker"]
    return cluster.host_of(int(str(worker).rsplit(":", 1)[1]))


def test_heavy_reports_on_an_uploaded_dataset_complete_and_download(cluster: Cluster) -> None:
    auth = cluster.auth
    dataset_id = _upload_dataset(cluster, auth)
    api = cluster.stack.service.client
    for kind in ("pdf", "excel", "analysis"):
        body = {
            "report_type": kind,
            "dataset": {"source": "upload", "dataset_id": dataset_id},
            "title": f"Sales {kind}",
            "group_by": ["region"],
            "measures": ["revenue"],
            "date_column": "day",
        }
        response = api.post("/reports/heavy", json=body, headers=auth)
        assert response.status_code == 202, response.text
        job = cluster.wait(response.json()["job_id"], auth)
        assert job["status"] == "completed", job
        assert _ran_on_a_worker_host(cluster, job) in HOSTS
        download = api.get(job["download_url"])  # the signed link: no token
        assert download.status_code == 200, download.text
        if kind == "pdf":
            assert (
                "Sales pdf" in pypdf.PdfReader(io.BytesIO(download.content)).pages[0].extract_text()
            )
        elif kind == "excel":
            book = openpyxl.load_workbook(io.BytesIO(download.content), read_only=True)
            assert "Summary" in book.sheetnames
        else:
            assert download.headers["content-type"].startswith(("application/json", "text/html"))
    # The workers' scratch directories are theirs and left clean after each attempt.
    for name, scratch in cluster.scratch.items():
        leftovers = [p for p in scratch.rglob("*") if p.is_file()] if scratch.exists() else []
        assert leftovers == [], (name, leftovers)


def test_ocr_and_thumbnails_of_an_uploaded_document_run_on_a_worker_host(cluster: Cluster) -> None:
    need_tesseract()
    auth = cluster.auth
    api = cluster.stack.service.client
    response = api.post(
        "/documents",
        params={"ocr": "true", "thumbnails": "true"},
        files={"file": ("scan.png", png_bytes(["INVOICE 4471", "TOTAL 99 EUR"]), "image/png")},
        headers=auth,
    )
    assert response.status_code == 201, response.text
    jobs = {kind: job["job_id"] for kind, job in response.json()["jobs"].items()}
    ocr = cluster.wait(jobs["ocr"], auth)
    assert ocr["status"] == "completed", ocr
    assert _ran_on_a_worker_host(cluster, ocr) in HOSTS
    assert "INVOICE" in str(ocr["result"]).upper()
    thumbs = cluster.wait(jobs["thumbnails"], auth)
    assert thumbs["status"] == "completed", thumbs
    archive = api.get(thumbs["download_url"])
    assert archive.status_code == 200
    assert zipfile.ZipFile(io.BytesIO(archive.content)).namelist()


def _running_on(cluster: Cluster, job_id: str, timeout: float = 60) -> str:
    """Once the job has sent a part of its mail, the host whose process runs it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_scope() as session:
            job = session.get(ReportJob, job_id)
            assert job is not None
            if job.status == "started" and job.progress_percent >= 15 and job.worker:
                return cluster.host_of(int(job.worker.rsplit(":", 1)[1]))
        time.sleep(0.05)
    raise AssertionError(f"bulk job {job_id} did not get going")


def test_a_bulk_mail_whose_host_dies_is_finished_by_the_other_and_nobody_gets_two(
    cluster: Cluster,
) -> None:
    auth = cluster.auth
    prefix = f"mh-{os.getpid()}-{time.monotonic_ns()}"
    recipients = [{"email": f"{prefix}-{i:03d}@example.com"} for i in range(BULK_RECIPIENTS)]
    response = cluster.stack.service.client.post(
        "/notifications/bulk",
        headers=auth,
        json={"subject": "Statement", "body": "Hello.", "recipients": recipients},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    victim = _running_on(cluster, job_id)
    cluster.hosts[victim].kill_all()  # the machine is gone, mid-send
    try:
        job = cluster.wait(job_id, auth, timeout=180)
    finally:
        cluster.hosts[victim].start()  # for the tests after this one
    assert job["status"] == "completed", job
    survivor = _ran_on_a_worker_host(cluster, job)
    assert survivor != victim
    counts = cluster.smtp.recorder.count_by_recipient()
    ours = {address: n for address, n in counts.items() if address.startswith(prefix)}
    assert set(ours.values()) == {1}, {a: n for a, n in ours.items() if n != 1}
    # At most the one message in flight when the host died is in doubt (never re-sent).
    assert len(ours) >= BULK_RECIPIENTS - 2, len(ours)


def test_a_tampered_link_is_refused_and_the_real_one_opens(cluster: Cluster) -> None:
    auth = cluster.auth
    api = cluster.stack.service.client
    response = api.post("/reports/dummy", json={}, headers=auth)
    job = cluster.wait(response.json()["job_id"], auth)
    url = urlsplit(job["download_url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    forged = dict(
        query, signature=("f" if query["signature"][0] != "f" else "e") + query["signature"][1:]
    )
    assert api.get(url.path, params=forged).status_code == 403
    assert api.get(url.path, params=query).status_code == 200


def test_cleanup_on_a_worker_host_removes_the_objects_of_an_expired_job(cluster: Cluster) -> None:
    auth = cluster.auth
    api = cluster.stack.service.client
    job = cluster.wait(api.post("/reports/dummy", json={}, headers=auth).json()["job_id"], auth)
    assert job["status"] == "completed"
    with session_scope() as session:
        row = session.get(ReportJob, job["job_id"])
        assert row is not None and row.artifact_path
        key = row.artifact_path
        retention = cluster.stack.service.settings.JOB_RETENTION_DAYS
        session.execute(
            update(ReportJob)
            .where(ReportJob.id == row.id)
            .values(created_at=utcnow() - timedelta(days=retention + 1))
        )
    assert cluster.store.exists(key)
    from celery import Celery

    producer = Celery("cleanup-caller", broker=cluster.stack.env["CELERY_BROKER_URL"])
    try:
        producer.send_task(
            "app.services.celery_report_tasks.cleanup_old_report_jobs", queue="reports"
        )
    finally:
        producer.close()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and cluster.store.exists(key):
        time.sleep(0.1)
    assert not cluster.store.exists(key)
    assert api.get(f"/reports/jobs/{job['job_id']}", headers=auth).status_code == 404


def test_no_worker_host_wrote_outside_its_own_directory(cluster: Cluster) -> None:
    """What each host keeps locally is scratch and metrics: never a dataset or an artifact."""
    for name in HOSTS:
        host_dir = cluster.scratch[name].parent
        kept = {p.relative_to(host_dir).parts[0] for p in host_dir.rglob("*") if p.is_file()}
        assert not kept & {"datasets", "documents", "artifacts", "storage", "ledgers"}, (name, kept)
