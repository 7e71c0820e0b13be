"""`reportctl submit pdf|excel|analysis`: ask a running server for a heavy report, follow it
with a progress bar, and save the file.

    reportctl submit excel --rows 1000000 --wait --out sales.xlsx
    reportctl submit pdf --dataset 3f2b... --group-by region --measures amount --wait

It is an HTTP client (the server does the work), so it runs anywhere the API is reachable.
The token comes from --token or REPORTCTL_TOKEN; the server from --url or REPORTCTL_URL.
stdout gets one line, the job id or the saved file's path; the progress bar goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_URL = "http://127.0.0.1:8000"
FINAL = {"completed", "failed", "cancelled"}
STREAM_READ_SECONDS = 60.0
"""Silence that means a dead connection: the server sends a keep-alive every 15 s."""
RECONNECT_SECONDS = 1.0
BAR_WIDTH = 30


class ClientSettings(BaseSettings):
    """The client's own environment (REPORTCTL_TOKEN, REPORTCTL_URL), not the server's."""

    model_config = SettingsConfigDict(env_prefix="REPORTCTL_", extra="ignore")

    TOKEN: str = ""
    URL: str = DEFAULT_URL


class SubmitError(Exception):
    """Something the user must fix or know; printed without a traceback."""


def add_submit_parser(subparsers: Any) -> None:
    """Add `submit` to reportctl's sub-commands."""
    parser = subparsers.add_parser(
        "submit",
        help="submit a heavy report (pdf, excel, analysis) to a running server",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("report_type", choices=["pdf", "excel", "analysis"])
    parser.add_argument(
        "--rows", type=int, default=10_000, help="rows of the demo sales dataset (default 10,000)"
    )
    parser.add_argument("--seed", type=int, default=42, help="demo dataset seed (default 42)")
    parser.add_argument("--dataset", metavar="ID", help="an uploaded dataset instead of the demo")
    parser.add_argument("--title")
    parser.add_argument("--group-by", metavar="COLS", help="comma-separated columns")
    parser.add_argument("--measures", metavar="COLS", help="comma-separated numeric columns")
    parser.add_argument("--date-column", metavar="COL")
    parser.add_argument("--period", choices=["day", "week", "month", "quarter", "year"])
    parser.add_argument("--wait", action="store_true", help="follow the job until it ends")
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="save the result here (implies --wait; default: server's name)",
    )
    parser.add_argument("--url", help=f"server URL (default: $REPORTCTL_URL or {DEFAULT_URL})")
    parser.add_argument("--token", help="API token (default: $REPORTCTL_TOKEN)")
    parser.add_argument(
        "--timeout", type=float, default=1800.0, help="seconds to wait for the job (default 1800)"
    )
    parser.set_defaults(func=run_submit)


def build_body(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {"report_type": args.report_type}
    if args.dataset:
        body["dataset"] = {"source": "upload", "dataset_id": args.dataset}
    else:
        body["dataset"] = {"source": "demo", "name": "sales", "rows": args.rows, "seed": args.seed}
    if args.title:
        body["title"] = args.title
    for key, value in (("group_by", args.group_by), ("measures", args.measures)):
        if value is not None:
            body[key] = [c.strip() for c in value.split(",") if c.strip()]
    if args.date_column:
        body["date_column"] = args.date_column
    if args.period:
        body["period"] = args.period
    return body


def run_submit(
    args: argparse.Namespace,
    *,
    client: httpx.Client | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """The command; `client` lets tests talk to an in-process app."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    env = ClientSettings()
    token = args.token or env.TOKEN
    if not token:
        err.write(
            "reportctl submit: no token (use --token or set REPORTCTL_TOKEN; create one "
            "with `reportctl token create NAME`)\n"
        )
        return 2
    own = client is None
    http = client or httpx.Client(base_url=(args.url or env.URL).rstrip("/"), timeout=30.0)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        job = _call(http, "POST", "/reports/heavy", headers, json=build_body(args))
        job_id = job["job_id"]
        if not (args.wait or args.out):
            out.write(f"{job_id}\n")
            return 0
        err.write(f"job {job_id} accepted ({job.get('status')}, {job.get('backend')})\n")
        final = _follow(http, job_id, headers, err, timeout=args.timeout)
        if final["status"] != "completed":
            reason = final.get("error") or final["status"]
            err.write(f"job {job_id} {final['status']}: {reason}\n")
            return 1
        path = _download(http, final, headers, args.out)
        out.write(f"{path}\n")
        err.write(f"saved {path} ({path.stat().st_size:,} bytes)\n")
        return 0
    except SubmitError as exc:
        err.write(f"reportctl submit: {exc}\n")
        return 2
    except KeyboardInterrupt:
        err.write("\nstopped waiting; the job goes on on the server\n")
        return 130
    finally:
        if own:
            http.close()


def _call(
    http: httpx.Client, method: str, path: str, headers: dict[str, str], **kwargs: Any
) -> dict[str, Any]:
    try:
        response = http.request(method, path, headers=headers, **kwargs)
    except httpx.HTTPError as exc:
        raise SubmitError(f"cannot reach the server at {http.base_url}: {exc}") from None
    if response.status_code >= 400:
        raise SubmitError(f"{method} {path} -> HTTP {response.status_code}: {_detail(response)}")
    body: dict[str, Any] = response.json()
    return body


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:300]
    if isinstance(detail, list):  # pydantic's list of errors
        return "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}" for e in detail)
    return str(detail)


def _follow(
    http: httpx.Client, job_id: str, headers: dict[str, str], err: IO[str], *, timeout: float
) -> dict[str, Any]:
    """Follow the job's event stream (`GET /reports/jobs/{id}/events`) until its final event,
    drawing the bar (a line per step when not a terminal). A dropped connection resumes
    from the last event received (`Last-Event-ID`), so no step is shown twice."""
    started = time.monotonic()
    bar = _Bar(err, started)
    last_id: str | None = None
    while True:
        if time.monotonic() - started > timeout:
            raise SubmitError(
                f"job {job_id} not finished after {timeout:.0f}s; "
                f"follow it at /reports/jobs/{job_id}"
            )
        stream_headers = {**headers, "Accept": "text/event-stream"}
        if last_id is not None:
            stream_headers["Last-Event-ID"] = last_id
        try:
            with http.stream(
                "GET",
                f"/reports/jobs/{job_id}/events",
                headers=stream_headers,
                timeout=httpx.Timeout(30.0, read=STREAM_READ_SECONDS),
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise SubmitError(
                        f"GET /reports/jobs/{job_id}/events -> HTTP {response.status_code}: "
                        f"{_detail(response)}"
                    )
                for event_id, job in _events(response.iter_lines()):
                    last_id = event_id or last_id
                    bar.draw(job)
                    if job["status"] in FINAL:
                        bar.end()
                        return job
        except httpx.HTTPError:
            pass  # the connection dropped: resume after the last event
        time.sleep(RECONNECT_SECONDS)


def _events(lines: Iterator[str]) -> Iterator[tuple[str | None, dict[str, Any]]]:
    """(id, job) of each event of a text/event-stream; comments (keep-alives) skipped."""
    event_id: str | None = None
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield event_id, json.loads("\n".join(data))
            event_id, data = None, []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
        elif line.startswith("id:"):
            event_id = line[3:].strip()


class _Bar:
    """The progress bar on stderr: redrawn in place on a terminal, else a line per step."""

    def __init__(self, err: IO[str], started: float) -> None:
        self.err = err
        self.started = started
        self.tty = err.isatty()
        self.last_line = ""

    def draw(self, job: dict[str, Any]) -> None:
        progress = job.get("progress") or {}
        percent = 100.0 if job["status"] == "completed" else float(progress.get("percent") or 0)
        message = str(progress.get("message") or "")
        line = render_bar(percent, job["status"], message, time.monotonic() - self.started)
        if self.tty:
            self.err.write("\r" + line.ljust(len(self.last_line)))
        elif _step(line) != _step(self.last_line):
            self.err.write(line + "\n")
        self.err.flush()
        self.last_line = line

    def end(self) -> None:
        if self.tty:
            self.err.write("\n")


def render_bar(percent: float, status: str, message: str, elapsed: float) -> str:
    """`[########--------------]  35%  started  Data rows 350,000 of 1,000,000  12s`."""
    filled = int(BAR_WIDTH * max(0.0, min(100.0, percent)) / 100)
    bar = "#" * filled + "-" * (BAR_WIDTH - filled)
    return f"[{bar}] {percent:3.0f}%  {status:<9} {message[:60]:<60} {elapsed:5.0f}s".rstrip()


def _step(line: str) -> str:
    """What must change for a non-terminal to get a new line: tens of percent, or status."""
    match = re.search(r"\]\s+(\d+)%\s+(\S+)", line)
    return f"{int(match.group(1)) // 10}:{match.group(2)}" if match else line


def _download(
    http: httpx.Client, job: dict[str, Any], headers: dict[str, str], out: Path | None
) -> Path:
    url = job.get("download_url")
    if not url:
        raise SubmitError(f"job {job['job_id']} completed without a file")
    try:
        with http.stream("GET", url, headers=headers) as response:
            if response.status_code >= 400:
                response.read()
                raise SubmitError(f"download -> HTTP {response.status_code}: {_detail(response)}")
            target = out or Path(_server_filename(response) or f"{job['job_id']}.bin")
            if target.is_dir():
                target = target / (_server_filename(response) or f"{job['job_id']}.bin")
            partial = target.with_name(target.name + ".part")
            with partial.open("wb") as handle:
                for chunk in response.iter_bytes(1024 * 1024):
                    handle.write(chunk)
            partial.replace(target)
    except httpx.HTTPError as exc:
        raise SubmitError(f"download failed: {exc}") from None
    return target


def _server_filename(response: httpx.Response) -> str | None:
    """The name in Content-Disposition, reduced to a plain file name."""
    header = response.headers.get("content-disposition", "")
    match = re.search(r"filename\*=UTF-8''([^;]+)|filename=\"?([^\";]+)\"?", header)
    if not match:
        return None
    from urllib.parse import unquote

    name = unquote(match.group(1) or match.group(2))
    name = Path(name.replace("\\", "/")).name
    return name if name not in {"", ".", ".."} else None
