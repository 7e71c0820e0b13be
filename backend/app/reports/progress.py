"""A builder's progress in its own terms (stages), mapped onto the job's 0-100."""

from __future__ import annotations

from collections.abc import Callable


class Progress:
    """Maps a builder's stages onto 0-100 so each stage reports in its own terms.

    `report` is `JobContext.progress`: throttled, and raising `JobCancelled` when the job was
    cancelled, which is what makes frequent calls double as cancellation points.
    """

    def __init__(self, report: Callable[[float, str], None]) -> None:
        self._report = report
        self.start, self.end, self.message = 0.0, 100.0, ""

    def stage(self, start: float, end: float, message: str) -> None:
        self.start, self.end, self.message = start, end, message
        self._report(start, message)

    def update(self, fraction: float, message: str | None = None) -> None:
        fraction = min(1.0, max(0.0, fraction))
        self._report(self.start + (self.end - self.start) * fraction, message or self.message)

    def tick(self, duckdb_percent: float) -> None:
        """A `datasets.Tick`: DuckDB's own percent when it has one, else the stage start."""
        self.update(duckdb_percent / 100.0 if duckdb_percent > 0 else 0.0)
