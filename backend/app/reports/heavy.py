"""The handler of heavy report jobs (pdf, excel, analysis): resolve the dataset, build, return.

The runner owns the job row, the artifact's final place and every state change; this module
only turns params into a file and a small JSON result, reporting progress as it goes.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from app.jobs.context import ArtifactFile, JobContext, JobOutput
from app.jobs.errors import JobCancelled, PermanentJobError, TransientJobError
from app.reports.datasets import OpenedDataset, open_dataset
from app.reports.errors import InvalidReportRequest
from app.reports.locale_style import using
from app.reports.params import ReportParams
from app.reports.progress import Progress
from app.reports.queries import filter_sql
from app.storage import ObjectMissing, StorageError, StorageUnavailable, get_store

HTML_MIME = "text/html; charset=utf-8"
MAX_RESULT_BYTES = 512 * 1024
"""The analysis JSON stored in the job row; larger results keep only the headline parts."""

_UNSAFE_IN_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


def _download_name(title: str, suffix: str) -> str:
    """A download name from a report title (ASCII, no separators)."""
    stem = _UNSAFE_IN_FILENAME.sub("-", title).strip("-._")[:80] or "report"
    return stem + suffix


def _memory_limit_mb(ctx: JobContext) -> int:
    """DuckDB's share of a worker's memory budget (the rest is Python, ReportLab, buffers)."""
    budget_mb = ctx.settings.WORKER_MAX_MEMORY_PER_CHILD_KB // 1024
    return max(128, min(4096, budget_mb // 2))


def _staged(ctx: JobContext, p: ReportParams, work: Path) -> ReportParams:
    """`p` with its uploaded dataset as a local file: read in place from a `file://` store,
    else downloaded into this attempt's work directory (removed with it)."""
    key = p.source.get("key")
    if p.source.get("source") != "upload" or not key:
        return p  # a demo, or a job queued before the object store (a `path` already)
    objects = get_store(ctx.settings)
    try:
        local = objects.local_path(key)
        if local is None:
            local = work / f"dataset{Path(key).suffix}"
            objects.download(key, local)
        elif not local.is_file():
            raise ObjectMissing(key)
    except ObjectMissing:
        raise PermanentJobError("the uploaded dataset's file no longer exists") from None
    except StorageUnavailable:
        raise  # a ConnectionError: the runner retries the attempt
    except StorageError as exc:
        raise PermanentJobError(f"the uploaded dataset cannot be read: {exc}") from exc
    return dataclasses.replace(p, source={**p.source, "path": str(local)})


def _open(ctx: JobContext, p: ReportParams, work: Path, progress: Progress) -> OpenedDataset:
    try:
        ds = open_dataset(
            p.source,
            filters_sql=filter_sql(p.filters, p.columns),
            temp_dir=work / "duckdb",
            memory_limit_mb=_memory_limit_mb(ctx),
        )
    except InvalidReportRequest as exc:
        raise PermanentJobError(str(exc)) from exc
    except duckdb.IOException as exc:
        if p.source.get("source") == "upload" and not Path(p.source["path"]).exists():
            raise PermanentJobError("the uploaded dataset's file no longer exists") from exc
        raise TransientJobError(f"could not read the dataset: {exc}") from exc
    missing = [
        c
        for c in [*p.group_by, *p.measures, *([p.date_column] if p.date_column else [])]
        if c not in ds.columns
    ]
    if missing:
        ds.close()
        raise PermanentJobError(
            f"the dataset no longer has column(s) {', '.join(missing)}; "
            f"available: {', '.join(ds.columns)}"
        )
    if p.source.get("format") != "parquet":
        # Every builder scans several times: one pass to a columnar file beats regenerating
        # demo rows or re-parsing CSV on each scan.
        progress.stage(0, 1, "Preparing data")
        ds.materialize(work / "data.parquet", tick=progress.tick)
    return ds


def run(ctx: JobContext) -> JobOutput:
    """Build one heavy report for `ctx.job_type` from `ctx.params`."""
    try:
        p = ReportParams.from_params(ctx.params)
    except (InvalidReportRequest, ValueError, KeyError, TypeError) as exc:
        raise PermanentJobError(f"invalid report parameters: {exc}") from exc
    kind = ctx.job_type if ctx.job_type in {"pdf", "excel", "analysis"} else p.report_type
    progress = Progress(ctx.progress)
    work = Path(tempfile.mkdtemp(prefix=ctx.scratch_prefix, dir=_scratch(ctx)))
    out: Path | None = None
    try:
        p = _staged(ctx, p, work)
        ds = _open(ctx, p, work, progress)
        try:
            with using(p.style()):  # numbers, dates, money for the audience
                if kind == "pdf":
                    from app.reports.pdf import PDF_MIME, build_pdf

                    out = ctx.temp_path(".pdf")
                    result = build_pdf(ds, p, out, progress)
                    artifact = ArtifactFile(out, PDF_MIME, _download_name(p.title, ".pdf"))
                elif kind == "excel":
                    from app.reports.excel import XLSX_MIME, build_excel

                    out = ctx.temp_path(".xlsx")
                    result = build_excel(ds, p, out, progress, scratch_dir=work)
                    artifact = ArtifactFile(out, XLSX_MIME, _download_name(p.title, ".xlsx"))
                elif kind == "analysis":
                    from app.reports.analysis import analyze
                    from app.reports.analysis_html import render_html

                    result = analyze(ds, p, progress)
                    progress.stage(90, 99, "Rendering the page")
                    out = ctx.temp_path(".html")
                    render_html(result, out, generated=_now(), filters=p.filters_text())
                    artifact = ArtifactFile(out, HTML_MIME, _download_name(p.title, ".html"))
                    result = _fit_result(result)
                else:
                    raise PermanentJobError(f"unknown heavy report type {kind!r}")
        finally:
            ds.close()
        ctx.progress(100, "Done")
        return JobOutput(result={"report_type": kind, **result}, artifact=artifact)
    except BaseException as exc:
        if out is not None:
            out.unlink(missing_ok=True)
        if isinstance(exc, duckdb.InterruptException):
            raise JobCancelled("cancelled") from exc
        if isinstance(exc, duckdb.OutOfMemoryException):
            raise PermanentJobError(
                "the report needs more memory than this worker allows; add filters or use "
                "fewer group_by columns"
            ) from exc
        if isinstance(exc, duckdb.ConversionException | duckdb.InvalidInputException):
            raise PermanentJobError(f"the dataset has a value that cannot be read: {exc}") from exc
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _scratch(ctx: JobContext) -> Path:
    ctx.scratch_dir.mkdir(parents=True, exist_ok=True)
    return ctx.scratch_dir


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fit_result(result: dict[str, Any]) -> dict[str, Any]:
    """Keep the stored JSON bounded: drop the bulkiest parts first, saying so."""
    dropped: list[str] = []

    def top_ten(r: dict[str, Any]) -> None:
        for g in r["groups"].values():
            g["top"] = g["top"][:10]

    def no_examples(r: dict[str, Any]) -> None:
        for o in r["outliers"]["measures"].values():
            o.update(examples_high=[], examples_low=[])

    def recent_trend(r: dict[str, Any]) -> None:
        if r["trend"]:
            r["trend"]["points"] = r["trend"]["points"][-60:]

    def no_columns(r: dict[str, Any]) -> None:
        r["columns"] = {}

    shrinkers: list[tuple[str, Callable[[dict[str, Any]], None]]] = [
        ("groups.top beyond 10", top_ten),
        ("outlier examples", no_examples),
        ("trend points before the last 60", recent_trend),
        ("column statistics", no_columns),
    ]
    for label, shrink in shrinkers:
        if len(json.dumps(result, default=str)) <= MAX_RESULT_BYTES:
            break
        shrink(result)
        dropped.append(label)
    if dropped:
        result["truncated"] = dropped
    return result
