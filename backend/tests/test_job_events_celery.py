"""A job's event stream when a Celery worker (another process, as on another host) runs the
job: the API's watcher sees its progress through the database."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.stack import running_stack
from tests.test_job_events import HEAVY_MIN_PROGRESS, check_job_stream, read_stream, serving

pytestmark = pytest.mark.timeout(240)


def test_celery_job_stream_from_submit_to_completion(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        worker = stack.worker("worker", "reports,celery", "2", name="celery")
        worker.start()
        service = stack.service
        auth = service.headers(service.token())
        # The stack's TestClient runs the app's lifespan; uvicorn serves the same app.
        with serving(service.client.app, lifespan="off") as url:
            response = httpx.post(url + "/reports/dummy", json={"delay_seconds": 2.5}, headers=auth)
            assert response.status_code == 202, response.text
            assert response.json()["backend"] == "celery"
            job_id = response.json()["job_id"]
            events = read_stream(f"{url}/reports/jobs/{job_id}/events", auth)
            check_job_stream(events, job_id)
            assert events[-1]["data"]["backend"] == "celery"
            # A heavy report built by the worker process: its stages stream the same way.
            response = httpx.post(
                url + "/reports/heavy",
                json={"report_type": "pdf", "dataset": {"rows": 1_000_000}, "detail_rows": 5_000},
                headers=auth,
            )
            assert response.status_code == 202, response.text
            assert response.json()["queue"] == "reports"
            report_id = response.json()["job_id"]
            events = read_stream(f"{url}/reports/jobs/{report_id}/events", auth)
            check_job_stream(events, report_id, min_progress=HEAVY_MIN_PROGRESS)
