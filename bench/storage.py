"""What an object store costs a report: S3 against local files, in one run; prints ratios.

    .venv/bin/python bench/storage.py            # 1,000,000-row Excel, best of 3 per store
    .venv/bin/python bench/storage.py --rows 100000 --runs 1   # a smoke run

The job is the real Excel handler on demo data, then `artifacts.store` (what the runner does
before it marks the job completed): time to download-ready. Local is a `file://` store on the
same disk as the scratch directory (the artifact is renamed into place); S3 is a private
`moto_server` on loopback (the upload goes through boto3's managed multipart transfer). A
real S3 endpoint adds its network round trips on top; moto keeps the objects in memory, so
this measures our client side (hashing, multipart, HTTP) rather than a disk.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "backend"))

from app.core.config import Settings
from app.jobs import artifacts
from app.jobs.context import JobContext
from app.reports import heavy
from app.reports.demo_datasets import columns_of_demo
from app.reports.schemas import HeavyReportRequest
from app.reports.validation import validate_request

MOTO = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")


@contextmanager
def moto_server() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [MOTO, "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _params(rows: int) -> dict[str, Any]:
    request = HeavyReportRequest.model_validate(
        {"report_type": "excel", "dataset": {"source": "demo", "rows": rows, "seed": 1}}
    )
    return validate_request(request, columns_of_demo("sales"))


def download_ready(settings: Settings, rows: int, job_id: str) -> tuple[float, float, int]:
    """(build seconds, store seconds, bytes) of one Excel job."""
    ctx = JobContext(
        job_id=job_id,
        job_type="excel",
        params=_params(rows),
        owner_id=1,
        attempt=1,
        settings=settings,
        report_progress=lambda p, m: None,
        check_cancelled=lambda: None,
        scratch_dir=settings.scratch_dir,
    )
    started = time.perf_counter()
    output = heavy.run(ctx)
    built = time.perf_counter()
    assert output.artifact is not None
    stored = artifacts.store(settings, job_id, output.artifact)
    done = time.perf_counter()
    return built - started, done - built, stored.size


def best(settings: Settings, rows: int, runs: int, label: str) -> tuple[float, float, int]:
    results = [download_ready(settings, rows, f"bench-{label}-{i}") for i in range(runs)]
    return min(results, key=lambda r: r[0] + r[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, moto_server() as endpoint:
        base = Path(tmp)
        os.environ.update(
            AWS_ENDPOINT_URL=endpoint,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
        )
        import boto3

        boto3.client("s3").create_bucket(Bucket="bench")
        local = Settings(ENVIRONMENT="test", VAR_DIR=base / "local")  # type: ignore[call-arg]
        s3 = Settings(  # type: ignore[call-arg]
            ENVIRONMENT="test", VAR_DIR=base / "s3", STORAGE_URL="s3://bench/reports"
        )
        print(
            f"bench/storage.py  {args.rows:,}-row Excel, best of {args.runs}, {os.cpu_count()} CPUs"
        )
        figures = {}
        for label, settings in (("file://", local), ("s3:// (moto)", s3)):
            build, store, size = best(settings, args.rows, args.runs, label[:2])
            figures[label] = build + store
            print(
                f"  {label:<14} build {build:6.2f} s + store {store:5.2f} s"
                f" = {build + store:6.2f} s to download-ready ({size / 1e6:.1f} MB)"
            )
        ratio = figures["s3:// (moto)"] / figures["file://"]
        print(f"  time to download-ready, S3 / local: {ratio:.2f}x")


if __name__ == "__main__":
    main()
