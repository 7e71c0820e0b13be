"""Host metrics (CPU, memory, disk) as Prometheus gauges, sampled by a periodic task.

Sampled rather than computed at scrape time because CPU utilisation needs an interval to
measure over; the gauges keep the most recent sample of whichever process took it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psutil

from app.core import metrics


def collect_system_metrics(*, paths: Iterable[Path], cpu_interval: float = 0.5) -> dict[str, Any]:
    """Sample the host, set the `system_*` gauges, and return the numbers (for the task)."""
    cpu = psutil.cpu_percent(interval=cpu_interval)
    memory = psutil.virtual_memory()
    mem = {
        "total": float(memory.total),
        "available": float(memory.available),
        "used": float(memory.total - memory.available),
    }
    disk: dict[str, dict[str, float]] = {}
    for path in paths:
        target = Path(path)
        while not target.exists() and target != target.parent:
            target = target.parent
        usage = psutil.disk_usage(str(target))
        disk[str(path)] = {
            "total": float(usage.total),
            "used": float(usage.used),
            "free": float(usage.free),
        }
    metrics.set_system(cpu_percent=cpu, memory=mem, disk=disk)
    return {
        "cpu_percent": cpu,
        "memory": {**mem, "percent": memory.percent},
        "disk": disk,
        "load_average": list(psutil.getloadavg()),
    }
