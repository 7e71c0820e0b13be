"""The console in a real headless Chromium (Debian's `chromium`, driven by Playwright), against
`reportctl serve` in embedded mode: sign in, request a PDF report and watch its bar move to
100 % without a reload, download it, cancel a job, re-run a failed one, see a new job appear
in the list by itself, and use it on a phone-sized screen. No request leaves the service.

Without Chromium or Playwright the module skips, except with CI=true, where it fails.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from pypdf import PdfReader

from tests.conftest import require
from tests.server import ServerProcess, reportctl

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
pytestmark = pytest.mark.timeout(300)

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # pragma: no cover - a dev dependency
    sync_playwright = None  # type: ignore[assignment]

# Records every value the page's progress bar takes, from the moment it is installed.
WATCH_BAR = """() => {
  window.seenPercents = [];
  const bar = document.querySelector('[data-field="bar"]');
  window.seenPercents.push(Number(bar.value));
  new MutationObserver(() => window.seenPercents.push(Number(bar.value)))
    .observe(bar, {attributes: true, childList: true, characterData: true, subtree: true});
}"""


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    require(sync_playwright is not None, "playwright is not installed (pip install playwright)")
    require(
        os.access(CHROMIUM, os.X_OK) or shutil.which("chromium") is not None,
        f"no Chromium at {CHROMIUM} (apt-get install chromium)",
    )
    tmp = tmp_path_factory.mktemp("console")
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "VAR_DIR": str(tmp),
        "DATABASE_URL": f"sqlite:///{tmp / 'reports.db'}",
        "JOB_BACKEND": "local",
        "CELERY_BROKER_URL": "",
        "RQ_REDIS_URL": "",
        "LOCAL_WORKERS": "2",
        "JOB_MAX_RETRIES": "0",
        "QUOTA_ACTIVE_JOBS": "10",
    }
    reportctl("db", "upgrade", env=env)
    token = reportctl("token", "create", "console-user", env=env).strip()
    server = ServerProcess(env, tmp / "server.log")
    server.start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM)
            try:
                yield {"url": server.url, "token": token, "browser": browser, "tmp": tmp}
            finally:
                browser.close()
    finally:
        server.stop()


def _api(console: dict[str, Any], path: str, body: dict[str, Any]) -> str:
    response = httpx.post(
        console["url"] + path,
        json=body,
        headers={"Authorization": f"Bearer {console['token']}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    return str(response.json()["job_id"])


def _signed_in(console: dict[str, Any], **context: Any) -> tuple[Page, list[str]]:
    """A fresh browser context signed in with the keyboard; every URL it requests is kept."""
    browser: Browser = console["browser"]
    page = browser.new_context(accept_downloads=True, **context).new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(console["url"] + "/ui/jobs")
    assert "/ui/login" in page.url
    page.get_by_label("API token").fill(console["token"])
    page.keyboard.press("Enter")
    _arrive(page, "/ui/jobs")
    return page, requested


def _arrive(page: Page, path: str, *, leaving: str | None = None) -> None:
    """Until the page is at a URL whose path matches the regex `path` (a glob would match
    `/ui/login?next=/ui/jobs` too), other than `leaving`, and has loaded."""
    pattern = re.compile(f"^{path}$")

    def arrived(url: str) -> bool:
        return url != leaving and pattern.match(urlsplit(url).path) is not None

    page.wait_for_url(arrived)


def _only_the_service(console: dict[str, Any], requested: list[str]) -> None:
    foreign = [u for u in requested if not u.startswith(console["url"] + "/")]
    assert not foreign, f"the page requested outside the service: {foreign}"


def test_pdf_report_progress_download(console: dict[str, Any]) -> None:
    page, requested = _signed_in(console)
    page.get_by_role("link", name="New report").click()
    page.get_by_label("Kind").select_option("pdf")
    page.get_by_label("Title").fill("Browser sales")
    page.get_by_label("Rows to generate").fill("300000")
    page.get_by_label("Detail rows").fill("20000")
    page.get_by_role("button", name="Run now").click()
    _arrive(page, "/ui/jobs/[0-9a-f-]+")
    page.evaluate(WATCH_BAR)
    page.wait_for_function("() => window.seenPercents.includes(100)", timeout=120_000)
    seen = page.evaluate("() => window.seenPercents")
    assert len(set(seen)) >= 3, f"the bar took too few values: {seen}"
    assert seen == sorted(seen), f"the bar went backwards: {seen}"
    page.locator('[data-field="status"]', has_text="completed").wait_for(timeout=30_000)
    reloads = page.evaluate("() => performance.getEntriesByType('navigation').length")
    assert reloads == 1, "the page was reloaded"

    with page.expect_download() as download:
        page.get_by_role("link", name="Download the result").click()
    saved = console["tmp"] / "downloaded.pdf"
    download.value.save_as(saved)
    reader = PdfReader(saved)
    assert len(reader.pages) > 2
    assert "Browser sales" in (reader.pages[0].extract_text() or "")
    _only_the_service(console, requested)


def test_cancel_and_rerun(console: dict[str, Any]) -> None:
    page, requested = _signed_in(console)
    slow = _api(console, "/reports/dummy", {"delay_seconds": 60})
    page.goto(f"{console['url']}/ui/jobs/{slow}")
    page.get_by_role("button", name="Cancel this job").click()
    # The form posts and comes back to this page, now showing the job cancelled.
    page.locator('[data-field="status"]', has_text="cancelled").wait_for(timeout=15_000)
    assert page.get_by_role("button", name="Cancel this job").is_hidden()

    failing = _api(console, "/reports/dummy", {"fail_times": 1})
    page.goto(f"{console['url']}/ui/jobs/{failing}")
    page.locator('[data-field="status"]', has_text="failed").wait_for(timeout=30_000)
    rerun = page.get_by_role("button", name="Run it again")
    rerun.wait_for(state="visible")
    failed_page = page.url
    rerun.click()
    _arrive(page, "/ui/jobs/[0-9a-f-]+", leaving=failed_page)
    new_id = page.url.rsplit("/", 1)[-1]
    assert new_id != failing
    page.locator('[data-field="status"]', has_text="failed").wait_for(timeout=30_000)
    _only_the_service(console, requested)


def test_list_shows_new_jobs_live_and_fits_a_phone(console: dict[str, Any]) -> None:
    page, requested = _signed_in(console, viewport={"width": 375, "height": 740})
    page.locator("tbody#job-rows").wait_for()
    page.wait_for_timeout(500)  # the stream is open
    job_id = _api(console, "/reports/dummy", {"delay_seconds": 0.5})
    row = page.locator(f'tr[data-job-id="{job_id}"]')
    row.locator('[data-field="status"]', has_text="completed").wait_for(timeout=30_000)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.get_by_label("Status").select_option("completed")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(lambda url: "status=completed" in url)
    statuses = page.locator('#job-rows [data-field="status"]').all_inner_texts()
    assert statuses and set(statuses) == {"completed"}
    _only_the_service(console, requested)


def test_report_form_columns_follow_the_dataset(console: dict[str, Any], tmp_path: Path) -> None:
    page, requested = _signed_in(console)
    page.get_by_role("link", name="New report").click()
    _arrive(page, "/ui/reports/new")
    csv = tmp_path / "visits.csv"
    csv.write_text("day,site,visitors,minutes\n2025-01-01,a,10,3.5\n2025-01-02,b,12,4.0\n")
    page.get_by_label("CSV or Parquet file").set_input_files(str(csv))
    page.get_by_label("Name", exact=True).fill("visits")
    page.get_by_role("button", name="Upload").click()
    page.wait_for_url(lambda url: "dataset=upload" in url)
    measures = page.locator("#r-measures option").all_inner_texts()
    assert measures == ["visitors", "minutes"]
    page.locator("#r-dataset").select_option(index=0)  # the demo dataset
    page.locator('#r-measures option[value="revenue"]').wait_for(state="attached")
    assert "site" not in page.locator("#r-group").inner_text()
    _only_the_service(console, requested)
