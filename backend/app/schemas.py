"""Request and response bodies of the job API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.models import ReportJob


class StrictModel(BaseModel):
    """Unknown fields are an error: a typo must not be silently ignored."""

    model_config = ConfigDict(extra="forbid")


class DummyReportRequest(StrictModel):
    delay_seconds: float = Field(default=0, ge=0, le=60, description="How long the job sleeps.")
    fail_times: int = Field(
        default=0, ge=0, le=5, description="Transient failures before it succeeds."
    )


class JobAccepted(BaseModel):
    job_id: str
    status: str
    backend: str | None
    queue: str
    status_url: str


class Progress(BaseModel):
    percent: float
    message: str


class JobRead(BaseModel):
    job_id: str
    job_type: str
    status: str
    progress: Progress
    backend: str | None
    queue: str
    attempts: int
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    result: dict[str, Any] | None
    download_url: str | None
    history: list[dict[str, Any]] = []
    backend_state: str | None = None

    @classmethod
    def from_job(cls, job: ReportJob, *, backend_state: str | None = None) -> JobRead:
        return cls(
            job_id=job.id,
            job_type=job.job_type,
            status=job.status,
            progress=Progress(percent=job.progress_percent, message=job.progress_message),
            backend=job.backend,
            queue=job.queue,
            attempts=job.attempts,
            created_at=job.created_at,
            queued_at=job.queued_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            error=job.error,
            result=job.result,
            download_url=(
                f"/reports/jobs/{job.id}/download"
                if job.status == "completed" and job.artifact_path
                else None
            ),
            history=job.history or [],
            backend_state=backend_state,
        )


class JobList(BaseModel):
    items: list[JobRead]
    total: int
    limit: int
    offset: int
