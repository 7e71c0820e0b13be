"""The dummy report: sleeps, fails on purpose, and writes a tiny JSON file.

It exists to exercise the machinery (queues, retries, crash recovery, benchmarks) without the
cost of a real report.
"""

from __future__ import annotations

import json
import time

from app.db.base import utcnow
from app.jobs.context import ArtifactFile, JobContext, JobOutput
from app.jobs.errors import TransientJobError


def run(ctx: JobContext) -> JobOutput:
    delay = float(ctx.params.get("delay_seconds", 0))
    fail_times = int(ctx.params.get("fail_times", 0))
    if ctx.attempt <= fail_times:
        raise TransientJobError(f"simulated transient failure {ctx.attempt} of {fail_times}")
    # The file is written as the work goes, like a real report: an interrupted attempt
    # leaves a partial file that the runner must clean up.
    path = ctx.temp_path(".json")
    deadline = time.monotonic() + delay
    with path.open("w") as partial:
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.1))
            done = 100.0 * (1 - max(deadline - time.monotonic(), 0) / delay)
            partial.write(f"{done:.0f}\n")
            ctx.progress(done, f"working ({done:.0f}%)")
    result = {
        "message": "dummy report ready",
        "attempt": ctx.attempt,
        "slept_seconds": delay,
        "generated_at": utcnow().isoformat(),
    }
    path.write_text(json.dumps(result, indent=2))
    return JobOutput(
        result=result,
        artifact=ArtifactFile(
            path=path, mime_type="application/json", filename="dummy-report.json"
        ),
    )


def noop(ctx: JobContext) -> JobOutput:
    """Does nothing: what is left is the cost of the job machinery."""
    return JobOutput(result={"ok": True})
