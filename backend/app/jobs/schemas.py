"""What the API says about a job: the answer to a submit, one job, a page of jobs.

Built from the row with `model_validate(job)` (`from_attributes`): the column names are the
field names, and the derived fields (`progress`, `download_url`, and what a person recognises a
job by: `title`, `report_type`, `dataset_name`, `row_count`, `result_bytes`) are computed here,
once, for every route and event stream that shows a job.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, computed_field, field_validator

from app.core.config import get_settings
from app.jobs import links
from app.jobs.states import JobStatus


class JobAccepted(BaseModel):
    """The answer to a submit (HTTP 202): the job exists and is on its way."""

    model_config = ConfigDict(from_attributes=True)

    job_id: str
    status: str
    backend: str | None
    queue: str

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented idiom
    @property
    def status_url(self) -> str:
        return f"/reports/jobs/{self.job_id}"


class Progress(BaseModel):
    percent: float
    message: str


class JobRead(BaseModel):
    """One job as its owner sees it, read from the row (`JobRead.model_validate(job)`)."""

    model_config = ConfigDict(from_attributes=True)

    job_id: str = Field(validation_alias=AliasChoices("job_id", "id"))
    job_type: str
    status: str
    backend: str | None
    queue: str
    attempts: int
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str | None
    result: dict[str, Any] | None
    history: list[dict[str, Any]] = Field(default_factory=list)
    backend_state: str | None = None
    """The backend's own view of a live job (Celery or RQ), when it differs from the row's."""
    progress_percent: float = Field(default=0.0, exclude=True)
    progress_message: str = Field(default="", exclude=True)
    artifact_path: str | None = Field(default=None, exclude=True)
    owner_id: int = Field(default=0, exclude=True)
    params: dict[str, Any] = Field(default_factory=dict, exclude=True)
    artifact_size: int | None = Field(default=None, exclude=True)
    owner: str | None = None
    """The owner's user name (listings and reads; an admin's list holds everyone's jobs)."""
    version: int = 0
    """Goes up with every status change and progress step: the event stream's `id`."""
    updated_at: datetime | None = None
    """When the status or progress last changed (the database's clock)."""

    @field_validator("params", mode="before")
    @classmethod
    def _no_params(cls, value: Any) -> Any:
        return value or {}

    @field_validator("history", mode="before")
    @classmethod
    def _no_history(cls, value: Any) -> Any:
        return value or []

    @computed_field  # type: ignore[prop-decorator]  # pydantic's documented idiom
    @property
    def progress(self) -> Progress:
        return Progress(percent=self.progress_percent, message=self.progress_message)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def download_url(self) -> str | None:
        """A signed link that opens without a token (`app.jobs.links`)."""
        if self.status == JobStatus.COMPLETED and self.artifact_path:
            return links.download_path(get_settings(), self.job_id, self.owner_id)
        return None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def title(self) -> str | None:
        title = self.params.get("title") or self.params.get("subject")
        return str(title) if title else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def report_type(self) -> str | None:
        value = self.params.get("report_type") or (self.result or {}).get("report_type")
        return str(value) if value else None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dataset_name(self) -> str | None:
        """An upload's name, or `demo:<name>` for a generated dataset."""
        if name := self.params.get("dataset_name"):
            return str(name)
        dataset = self.params.get("dataset")
        if isinstance(dataset, dict) and dataset.get("source") == "demo":
            return f"demo:{dataset.get('name')}"
        return None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def row_count(self) -> int | None:
        """Rows of the job's dataset (the demo's size, or the upload's)."""
        dataset = self.params.get("dataset")
        for value in (
            self.params.get("dataset_rows"),
            dataset.get("rows") if isinstance(dataset, dict) else None,
        ):
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        return None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def result_bytes(self) -> int | None:
        """The size of the job's file, once there is one."""
        return self.artifact_size


class JobList(BaseModel):
    items: list[JobRead]
    total: int = Field(
        description="How many jobs match the filters, exact up to 1,000; past that 1,000 and "
        "`total_capped` is true (page on until a page comes back short)."
    )
    total_capped: bool = Field(
        default=False, description="True when more than 1,000 jobs match: `total` is a floor."
    )
    limit: int
    offset: int
