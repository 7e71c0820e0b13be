"""`reportctl submit --wait` against a real server (`reportctl serve`, embedded workers):
it follows the job's event stream and never polls the status route (counted in the access
log)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.server import BIN, ServerProcess, reportctl

pytestmark = pytest.mark.timeout(180)


def test_submit_wait_follows_the_stream(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(VAR_DIR=str(tmp_path / "var"), LOCAL_WORKERS="1", LOG_LEVEL="INFO")
    reportctl("db", "upgrade", env=env)
    token = reportctl("token", "create", "cli-user", env=env).strip()
    server = ServerProcess(env, tmp_path / "server.log")
    server.start()
    try:
        target = tmp_path / "report.xlsx"
        done = subprocess.run(
            [
                str(BIN / "reportctl"),
                "submit",
                "excel",
                "--rows",
                "20000",
                "--wait",
                "--out",
                str(target),
            ],
            env={**env, "REPORTCTL_URL": server.url, "REPORTCTL_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=150,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(target) and target.stat().st_size > 0
    assert "] 100%  completed" in done.stderr and "saved" in done.stderr
    steps = re.findall(r"\] +(\d+)%", done.stderr)
    assert len(steps) >= 2, done.stderr

    log = (tmp_path / "server.log").read_text()
    requests = re.findall(r'"(GET|POST) (/reports/[^ ?]*)', log)
    assert requests, log[-2000:]
    paths = [path for _, path in requests]
    assert any(p.endswith("/events") for p in paths), paths
    status_reads = [p for p in paths if re.fullmatch(r"/reports/jobs/[0-9a-f-]+", p)]
    assert status_reads == [], paths
