"""What a job handler sees: its parameters, a progress callback and where to write output;
and what a follow-up (a job that a completion asks for) must provide.

Handlers never touch the job row or the queue: they compute, report progress, and return a
`JobOutput`. The runner owns every state change, so all backends behave the same.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session

from app.core.config import Settings


@dataclass(frozen=True)
class ArtifactFile:
    """A finished file written by a handler; the runner moves it into place atomically."""

    path: Path
    mime_type: str
    filename: str


@dataclass
class JobOutput:
    """What a handler returns: a JSON-able result and/or one artifact file."""

    result: dict[str, Any] | None = None
    artifact: ArtifactFile | None = None


ProgressFn = Callable[[float, str], None]


@dataclass
class JobContext:
    """Everything a handler needs; built by the runner for one attempt of one job."""

    job_id: str
    job_type: str
    params: dict[str, Any]
    owner_id: int
    attempt: int
    settings: Settings
    report_progress: ProgressFn = field(repr=False)
    check_cancelled: Callable[[], None] = field(repr=False)
    scratch_dir: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))

    def progress(self, percent: float, message: str = "") -> None:
        """Report progress (0..100). Cheap to call often: writes are throttled.

        Raises `JobCancelled` when the job was cancelled, so long loops stop promptly.
        """
        self.report_progress(max(0.0, min(100.0, percent)), message)

    @property
    def scratch_prefix(self) -> str:
        """How this attempt's scratch files begin (`<job_id>-<attempt>-`): the runner removes
        an attempt's own leftovers by it, never those of another attempt still running."""
        return f"{self.job_id}-{self.attempt}-"

    def temp_path(self, suffix: str) -> Path:
        """A fresh path on the storage volume, so the final move is an atomic rename."""
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(suffix=suffix, prefix=self.scratch_prefix, dir=self.scratch_dir)
        os.close(fd)
        return Path(name)


class FollowUp(Protocol):
    def wanted(self, params: dict[str, Any]) -> bool:
        """Whether a job with these params asks for this follow-up (cheap: no I/O)."""
        ...

    def add(
        self,
        *,
        session: Session,
        settings: Settings,
        job_id: str,
        owner_id: int,
        params: dict[str, Any],
    ) -> str | None:
        """Add the follow-up's job row (pending) to `session`; its id, or None if not possible."""
        ...
