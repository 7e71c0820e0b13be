"""Prometheus metrics: names and labels, final outcomes vs retries, and aggregation across
processes (spawned and forked children, a child killed without notice), then `/metrics`
after real jobs ran in the embedded executor's worker processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.core import metrics, metrics_multiprocess
from tests.conftest import Service

BACKEND_DIR = Path(__file__).resolve().parents[1]


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample in an exposition (0 when absent, like a fresh counter)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return 0.0


def series(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample with exactly these labels, None when absent (unlike `sample`)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return None


def scrape() -> str:
    body, content_type = metrics.render_latest()
    assert content_type.startswith("text/plain")
    return body.decode()


def test_final_outcomes_and_retries_are_counted_separately() -> None:
    job_type = f"unit-{uuid.uuid4().hex[:8]}"
    q = "reports"
    metrics.job_started(job_type, q, wait_seconds=0.3)
    metrics.job_retried(job_type, q)
    metrics.job_started(job_type, q, wait_seconds=None)
    metrics.job_finished(job_type, q, "completed", 1.5)
    metrics.job_started(job_type, q, wait_seconds=0.1)
    metrics.job_finished(job_type, q, "failed", 0.5)
    metrics.job_finished(job_type, q, "retrying", 0.5)  # not final: refused, never raises
    text = scrape()
    labels = {"job_type": job_type, "queue": q}
    assert sample(text, "report_jobs_total", status="completed", **labels) == 1
    assert sample(text, "report_jobs_total", status="failed", **labels) == 1
    assert sample(text, "report_jobs_total", status="retrying", **labels) == 0
    assert sample(text, "report_jobs_retries_total", **labels) == 1
    assert sample(text, "report_jobs_active", **labels) == 0
    assert sample(text, "report_jobs_duration_seconds_count", **labels) == 2
    assert sample(text, "report_jobs_duration_seconds_sum", **labels) == 2.0
    assert sample(text, "report_jobs_wait_seconds_count", **labels) == 2
    assert sample(text, "report_jobs_duration_seconds_bucket", le="1.0", **labels) == 1


def test_queue_length_and_submit_counts() -> None:
    queue = f"q-{uuid.uuid4().hex[:6]}"
    metrics.set_queue_length(queue, 7, backend="rq")
    metrics.set_queue_length(queue, 3, backend="rq")
    metrics.job_submitted("dummy", queue, "queued", "celery")
    metrics.job_submitted("dummy", queue, "pending")
    text = scrape()
    assert sample(text, "report_jobs_queue_length", queue=queue, backend="rq") == 3
    assert (
        sample(text, "report_jobs_submitted_total", queue=queue, status="queued", backend="celery")
        == 1
    )
    assert (
        sample(text, "report_jobs_submitted_total", queue=queue, status="pending", backend="none")
        == 1
    )


# The multi-process test runs in a fresh interpreter: it makes that process an instance
# (setup_multiprocess), which must not disturb this one's.
_MULTIPROCESS_SCRIPT = r"""
import json, multiprocessing as mp, os, signal, socket, sys, time, urllib.request
from pathlib import Path

from app.core import metrics, metrics_multiprocess, metrics_server
from app.core.config import Settings

def record(n, leave_active, ready=None, hold=None):
    from app.core import metrics
    for _ in range(n):
        metrics.job_started("dummy", "reports", 0.05)
        metrics.job_finished("dummy", "reports", "completed", 0.2)
    metrics.job_started("dummy", "reports", None)
    metrics.job_retried("dummy", "reports")
    for _ in range(leave_active):
        metrics.job_started("dummy", "reports", None)
    if ready is not None:
        ready.set()
        hold.wait(30)

def value(text, name, **labels):
    from prometheus_client.parser import text_string_to_metric_families
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0

def snapshot():
    text = metrics.render_latest()[0].decode()
    keys = {"job_type": "dummy", "queue": "reports"}
    return {
        "completed": value(text, "report_jobs_total", status="completed", **keys),
        "retries": value(text, "report_jobs_retries_total", **keys),
        "active": value(text, "report_jobs_active", **keys),
        "durations": value(text, "report_jobs_duration_seconds_count", **keys),
        "waits": value(text, "report_jobs_wait_seconds_count", **keys),
    }

def main():
    root = Path(sys.argv[1])
    port = int(sys.argv[2])
    base = root / "prometheus"
    host = socket.gethostname()
    # Left-overs: a previous process with our pid, and a dead sibling instance on this host.
    (base / f"{host}-{os.getpid()}").mkdir(parents=True)
    (base / f"{host}-{os.getpid()}" / "counter_1.db").write_bytes(b"stale")
    (base / f"{host}-999999999").mkdir()

    settings = Settings(ENVIRONMENT="test", VAR_DIR=root, STORAGE_ROOT=root,
                        _env_file=None)
    instance = metrics_multiprocess.setup_multiprocess(settings)
    out = {"instance": str(instance), "env": os.environ["PROMETHEUS_MULTIPROC_DIR"],
           "stale_gone": not (instance / "counter_1.db").exists(),
           "dead_sibling_gone": not (base / f"{host}-999999999").exists()}

    # The parent records before forking: a forked child must write its own file, not ours.
    metrics.job_started("dummy", "reports", 0.05)
    metrics.job_finished("dummy", "reports", "completed", 0.2)

    spawn = mp.get_context("spawn")
    ready_a, hold_a = spawn.Event(), spawn.Event()
    a = spawn.Process(target=record, args=(3, 1, ready_a, hold_a))
    ready_b, hold_b = spawn.Event(), spawn.Event()
    b = spawn.Process(target=record, args=(2, 2, ready_b, hold_b))
    fork = mp.get_context("fork")
    c = fork.Process(target=record, args=(4, 0))
    for p in (a, b, c):
        p.start()
    ready_a.wait(60)
    ready_b.wait(60)
    c.join(60)
    out["running"] = snapshot()

    os.kill(b.pid, signal.SIGKILL)   # killed without notice: pruned at the next scrape
    b.join(10)
    out["after_kill"] = snapshot()

    hold_a.set()
    a.join(10)
    metrics_multiprocess.mark_process_dead(a.pid)  # what the executor's supervisor does
    out["after_exit"] = snapshot()

    out["server"] = metrics_server.start_worker_metrics_server(port, addr="127.0.0.1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        served = resp.read().decode()
    out["served_completed"] = value(served, "report_jobs_total", status="completed",
                                    job_type="dummy", queue="reports")
    out["port_file"] = (instance / metrics_server.PORT_FILE).read_text().strip()
    # A busy port with no other to try is refused quietly (the worker keeps running).
    metrics_server.stop_worker_metrics_server()
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    busy = blocker.getsockname()[1]
    out["busy_port"] = metrics_server.start_worker_metrics_server(busy, "127.0.0.1")
    # With a span, a second worker on the host takes the next free port instead.
    out["busy"] = busy
    out["next_port"] = metrics_server.start_worker_metrics_server(busy, "127.0.0.1", span=8)
    metrics_server.stop_worker_metrics_server()
    metrics_multiprocess.teardown_multiprocess()
    out["dir_removed"] = not instance.exists()
    print("RESULT " + json.dumps(out))

if __name__ == "__main__":
    main()
"""


def test_counts_aggregate_across_spawned_and_forked_processes(tmp_path: Path) -> None:
    from tests.server import free_port

    script = tmp_path / "record.py"
    script.write_text(textwrap.dedent(_MULTIPROCESS_SCRIPT))
    env = {k: v for k, v in os.environ.items() if k != metrics_multiprocess.ENV_VAR}
    env["PYTHONPATH"] = str(BACKEND_DIR)
    port = free_port()
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "root"), str(port)],
        cwd=BACKEND_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line.removeprefix("RESULT "))
    assert out["env"] == out["instance"]
    assert out["stale_gone"] and out["dead_sibling_gone"]
    # parent 1 + spawned 3 + 2 + forked 4 completed; one retry each child; 1 + 2 left active.
    assert out["running"] == {
        "completed": 10,
        "retries": 3,
        "active": 3,
        "durations": 10,
        "waits": 10,
    }
    assert out["after_kill"]["active"] == 1  # the killed child's jobs are no longer active
    assert out["after_kill"]["completed"] == 10  # but what it did still counts
    assert out["after_exit"] == {
        "completed": 10,
        "retries": 3,
        "active": 0,
        "durations": 10,
        "waits": 10,
    }
    assert out["server"] == port and out["served_completed"] == 10
    assert out["port_file"] == f"127.0.0.1:{port}"
    assert out["busy_port"] is None
    assert out["busy"] < out["next_port"] < out["busy"] + 8
    assert out["dir_removed"]


# -- /metrics after real jobs in the embedded executor ------------------------------------------


def _scrape_api(service: Service) -> str:
    response = service.client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def _eventually(service: Service, check: Callable[[str], bool], timeout: float = 30) -> str:
    """Outcomes are recorded just after the row changes: poll the scrape, not the row."""
    deadline = time.monotonic() + timeout
    text = _scrape_api(service)
    while not check(text) and time.monotonic() < deadline:
        time.sleep(0.1)
        text = _scrape_api(service)
    return text


def test_metrics_endpoint_counts_embedded_jobs(service: Service, auth: dict[str, str]) -> None:
    keys = {"job_type": "dummy", "queue": "reports"}

    def counts(text: str) -> dict[str, float]:
        return {
            "completed": sample(text, "report_jobs_total", status="completed", **keys),
            "failed": sample(text, "report_jobs_total", status="failed", **keys),
            "cancelled": sample(text, "report_jobs_total", status="cancelled", **keys),
            "retries": sample(text, "report_jobs_retries_total", **keys),
            "durations": sample(text, "report_jobs_duration_seconds_count", **keys),
            "waits": sample(text, "report_jobs_wait_seconds_count", **keys),
        }

    before = counts(_scrape_api(service))

    def post(**body: object) -> str:
        response = service.client.post("/reports/dummy", json=body, headers=auth)
        assert response.status_code == 202, response.text
        return str(response.json()["job_id"])

    plain = [post() for _ in range(3)]
    retried = post(fail_times=1)
    gave_up = post(fail_times=5)
    slow = post(delay_seconds=20)
    service.wait(slow, auth, statuses={"started"})
    assert service.client.post(f"/reports/jobs/{slow}/cancel", headers=auth).status_code == 200
    finals = {job_id: service.wait(job_id, auth)["status"] for job_id in [*plain, retried, gave_up]}
    assert finals == {**dict.fromkeys(plain, "completed"), retried: "completed", gave_up: "failed"}
    attempts = service.settings.max_attempts

    expected = {
        "completed": 4,
        "failed": 1,
        "cancelled": 1,
        "retries": 1 + (attempts - 1),
        "durations": 6,
        "waits": 6,
    }

    def delta(text: str) -> dict[str, float]:
        now = counts(text)
        return {name: now[name] - before[name] for name in now}

    text = _eventually(service, lambda t: delta(t) == expected)
    assert delta(text) == expected
    assert sample(text, "report_jobs_active", **keys) == 0
    # The embedded executor's queue is the database; its length is exported too.
    assert "report_jobs_queue_length" in text
    assert sample(text, "report_jobs_queue_length", queue="reports", backend="local") == 0


def test_metrics_token_is_required_when_set(service: Service) -> None:
    from pydantic import SecretStr

    from app.core.config import set_settings

    assert service.client.get("/metrics").status_code == 200  # unset: open, as documented
    set_settings(service.settings.model_copy(update={"METRICS_TOKEN": SecretStr("scrape-me")}))
    try:
        for headers in (
            {},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearer scrape-me-not"},
            {"Authorization": "Basic scrape-me"},
            service.headers(service.token(admin=True)),  # a user's token is not the scrape token
        ):
            response = service.client.get("/metrics", headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == "Bearer"
            assert "METRICS_TOKEN" in response.json()["detail"]
        response = service.client.get("/metrics", headers={"Authorization": "Bearer scrape-me"})
        assert response.status_code == 200
        assert "report_jobs_total" in response.text
    finally:
        set_settings(service.settings)


# -- every series from the start, in a real server (multiprocess mode) ------------------------


def job_samples(text: str) -> dict[tuple[str, str, str], float]:
    """Every sample labelled with a job type: (sample name, job type, other labels) -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if "job_type" in s.labels:
                rest = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()) if k != "job_type")
                found[(s.name, s.labels["job_type"], rest)] = float(s.value)
    return found


def test_a_fresh_server_shows_every_kind_at_zero_then_counts_each_job_once(
    tmp_path: Path,
) -> None:
    from app.jobs.registry import KINDS
    from tests.conftest import fresh_database
    from tests.server import ServerProcess, reportctl

    database = fresh_database("sqlite", tmp_path, migrate=False)
    env = {
        **{k: v for k, v in os.environ.items() if k != metrics_multiprocess.ENV_VAR},
        "ENVIRONMENT": "test",
        "VAR_DIR": str(tmp_path),
        "DATABASE_URL": database.url,
        "JOB_BACKEND": "local",
        "CELERY_BROKER_URL": "",
        "RQ_REDIS_URL": "",
        "LOCAL_WORKERS": "2",
    }
    reportctl("db", "upgrade", env=env)
    token = reportctl("token", "create", "metrics-test", env=env).strip()
    server = ServerProcess(env, tmp_path / "server.log")
    server.start()
    try:
        with httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10
        ) as client:
            fresh = client.get("/metrics").text
            zeros = job_samples(fresh)
            # The series a dashboard or an absent() alert names, for every kind, at 0.
            for kind in KINDS.values():
                keys = {"job_type": kind.job_type, "queue": kind.queue}
                for name, labels in [
                    ("report_jobs_retries_total", {}),
                    ("report_jobs_active", {}),
                    ("report_jobs_duration_seconds_count", {}),
                    ("report_jobs_wait_seconds_count", {}),
                    ("report_jobs_submitted_total", {"status": "queued", "backend": "local"}),
                    ("report_jobs_submitted_total", {"status": "pending", "backend": "none"}),
                    *[("report_jobs_total", {"status": s}) for s in metrics.FINAL_STATUSES],
                ]:
                    assert series(fresh, name, **keys, **labels) == 0, (name, keys, labels)
            # And every job-labelled series there is has every kind (one metric added later
            # is covered too), each at 0 before any job ran.
            names = {name for name, _, _ in zeros}
            for name in names:
                assert {t for n, t, _ in zeros if n == name} == set(KINDS), name
            assert set(zeros.values()) == {0.0}

            bodies: list[dict[str, int]] = [{}, {}, {"fail_times": 1}]
            ids = [client.post("/reports/dummy", json=body).json()["job_id"] for body in bodies]
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                statuses = [client.get(f"/reports/jobs/{i}").json()["status"] for i in ids]
                if statuses == ["completed"] * 3:
                    break
                time.sleep(0.1)
            assert statuses == ["completed"] * 3

            keys = {"job_type": "dummy", "queue": "reports"}
            want = {
                ("report_jobs_total", "completed"): 3.0,  # one final count per job
                ("report_jobs_total", "failed"): 0.0,
                ("report_jobs_total", "cancelled"): 0.0,
                ("report_jobs_retries_total", ""): 1.0,
                ("report_jobs_active", ""): 0.0,
                ("report_jobs_duration_seconds_count", ""): 3.0,
                ("report_jobs_wait_seconds_count", ""): 3.0,
            }

            def counts(text: str) -> dict[tuple[str, str], float | None]:
                return {
                    (name, status): series(
                        text, name, **keys, **({"status": status} if status else {})
                    )
                    for name, status in want
                }

            deadline = time.monotonic() + 30
            text = client.get("/metrics").text
            while counts(text) != want and time.monotonic() < deadline:
                time.sleep(0.1)  # outcomes are recorded just after the row changes
                text = client.get("/metrics").text
            assert counts(text) == want
            after = job_samples(text)
            assert set(after) == set(zeros)  # no series appeared or went
            assert {k: v for k, v in after.items() if k[1] != "dummy" and v} == {}
    finally:
        server.stop()
        if database.drop:
            database.drop()
