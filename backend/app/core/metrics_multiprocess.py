"""The multiprocess directory: where every process of an instance writes its metric samples.

Jobs run in other processes than the one that serves `/metrics` (Celery prefork children, the
embedded executor's spawned workers), so every process writes its samples to files in a
shared directory (prometheus_client's multiprocess mode) and the scraped process merges them.

One directory per *instance* (an API process or a Celery worker's main process, with all the
children it starts): `<base>/<hostname>-<pid>`, where base is `PROMETHEUS_MULTIPROC_DIR` or
`<storage root>/prometheus`. So an API and a worker that share a storage root never mix (or
wipe) each other's files, and each exposes exactly the work done under it; Prometheus sums
the instances. The owner calls `setup_multiprocess` before it starts children; children
inherit the directory through the environment (a spawned child picks it up when
`app.core.metrics` is imported, a forked one already has it).

`reportctl serve --workers N` is one instance too: its parent process (uvicorn's supervisor)
makes the directory and exports it before uvicorn spawns the workers (`share_with_workers`),
and each worker joins it instead of making its own, so `/metrics` from any worker shows the
requests and jobs of all of them. A worker that dies leaves its counters (what it counted
happened) and loses its `live*` gauges at the next scrape; a new process that reuses a dead
one's pid drops that pid's `live*` files before writing any (`join_inherited`).

This module knows directories, files and pids, not metric objects: `app.core.metrics` asks
to be told (`on_directory_change`) when it must rebuild them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, values
from prometheus_client import multiprocess as _mp

from app.core.config import Settings

log = logging.getLogger(__name__)

ENV_VAR = "PROMETHEUS_MULTIPROC_DIR"
SHARED_ENV = "REPORTCTL_SERVE_PID"
"""Set by `reportctl serve --workers N` to its pid: its own children join its instance."""
_OWNER_FILE = ".owner"
_LIVE_FILE = re.compile(r"^gauge_live[a-z]+_(\d+)\.db$")

_lock = threading.RLock()
_instance_dir: Path | None = None
_owner_pid: int | None = None
_directory_hooks: list[Callable[[], None]] = []


def multiprocess_dir() -> Path | None:
    """The directory this process writes its samples to (None: single-process mode)."""
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else None


def on_directory_change(hook: Callable[[], None]) -> None:
    """Run `hook` (under the lock) each time `setup_multiprocess` switches to a new directory:
    metric objects built before keep their old files open and must be built again."""
    _directory_hooks.append(hook)


def join_inherited() -> bool:
    """At import: if this process inherited a directory (a child of an instance, or started
    with the variable), make new metric values file-backed in it. False: single-process."""
    path = multiprocess_dir()
    if path is None:
        return False
    path.mkdir(parents=True, exist_ok=True)
    _drop_live_files(path, os.getpid())  # nothing of ours yet: a dead process had our pid
    # Whatever imported prometheus_client first, values must now go to the files.
    if not getattr(values.ValueClass, "_multiprocess", False):
        _new_file_values()
    return True


def _new_file_values() -> None:
    """A fresh file-backed value class, with its own per-process cache of open files."""
    # prometheus_client leaves MultiProcessValue unannotated.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]


def _drop_live_files(path: Path, pid: int) -> None:
    with contextlib.suppress(OSError):
        for entry in path.iterdir():
            match = _LIVE_FILE.match(entry.name)
            if match and int(match.group(1)) == pid:
                entry.unlink(missing_ok=True)


def shared_instance() -> Path | None:
    """The instance directory of the `reportctl serve --workers N` whose worker this process
    is (its parent exported it), else None: this process is an instance of its own.

    The parent's pid must be ours and own the directory, so a process merely started from a
    worker's environment (a Celery worker launched by hand) never writes into it."""
    parent = os.environ.get(SHARED_ENV, "")
    path = multiprocess_dir()
    if path is None or not parent.isdigit() or int(parent) != os.getppid():
        return None
    try:
        owner = (path / _OWNER_FILE).read_text().strip()
    except OSError:
        return None
    return path if owner == parent else None


def share_with_workers(settings: Settings) -> Path:
    """In `reportctl serve --workers N`, before uvicorn spawns the workers: make this process
    the instance (a fresh directory, dead instances' directories removed) and tell the
    workers to join it rather than each starting its own."""
    instance = setup_multiprocess(settings)
    os.environ[SHARED_ENV] = str(os.getpid())
    return instance


def _base_dir(settings: Settings) -> Path:
    # Per host, never in the (possibly shared or remote) storage: under VAR_DIR.
    base = Path(settings.PROMETHEUS_MULTIPROC_DIR or settings.VAR_DIR / "prometheus")
    if (base / _OWNER_FILE).exists():
        # The variable was inherited from another instance (a worker started from the API's
        # environment): use its parent, never the other instance's own directory.
        base = base.parent
    return base


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) still answers kill(0); it writes nothing any more.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def _remove_dead_siblings(base: Path, host: str) -> None:
    """Instance directories of processes on this host that are gone (crash, SIGKILL)."""
    with contextlib.suppress(OSError):
        for entry in base.iterdir():
            name, _, pid = entry.name.rpartition("-")
            if name != host or not pid.isdigit() or not entry.is_dir():
                continue
            if int(pid) != os.getpid() and not _pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)


def setup_multiprocess(settings: Settings) -> Path:
    """Become an instance: a fresh directory for this process and the children it starts.

    Call it in the owner process before it starts any child (API lifespan, Celery
    `worker_init`). It sets PROMETHEUS_MULTIPROC_DIR in os.environ so children inherit it.
    Idempotent for one directory; called again with another base (tests that build several
    apps in one process), it switches to a new directory and new metric objects, since the
    old ones keep their files open.
    """
    global _instance_dir, _owner_pid
    with _lock:
        shared = shared_instance()
        if shared is not None:
            return _join_shared(shared)
        host = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())
        base = _base_dir(settings)
        if (
            _instance_dir is not None
            and _owner_pid == os.getpid()
            and _instance_dir.parent.resolve() == base.resolve()
        ):
            return _instance_dir
        instance = base / f"{host}-{os.getpid()}"
        # A previous process with our pid (a restarted container is often pid 1) left files
        # that would be added to ours: start empty.
        shutil.rmtree(instance, ignore_errors=True)
        instance.mkdir(parents=True, exist_ok=True)
        (instance / _OWNER_FILE).write_text(f"{os.getpid()}\n")
        _remove_dead_siblings(base, host)
        os.environ[ENV_VAR] = str(instance)
        # A new value class: a fresh per-process file cache pointing at the new directory.
        _new_file_values()
        for hook in _directory_hooks:
            hook()
        _instance_dir = instance
        _owner_pid = os.getpid()
        log.debug("prometheus multiprocess directory: %s", instance)
        return instance


def _join_shared(instance: Path) -> Path:
    """A worker of `reportctl serve --workers N`: write into the parent's directory (the
    parent removes it when it exits; `teardown_multiprocess` here leaves it)."""
    global _instance_dir, _owner_pid
    if _instance_dir != instance:
        if not getattr(values.ValueClass, "_multiprocess", False):
            _new_file_values()
            for hook in _directory_hooks:
                hook()
        _instance_dir = instance
        _owner_pid = os.getppid()
        log.debug("prometheus multiprocess directory (shared): %s", instance)
    return instance


def teardown_multiprocess() -> None:
    """Remove this instance's directory when its owner exits (children have stopped)."""
    global _instance_dir, _owner_pid
    with _lock:
        if _instance_dir is not None and _owner_pid == os.getpid():
            shutil.rmtree(_instance_dir, ignore_errors=True)
            _instance_dir = None
            _owner_pid = None


def mark_process_dead(pid: int) -> None:
    """A child exited: drop its `live*` gauges (its counters and histograms must stay)."""
    path = multiprocess_dir()
    if path is not None and path.is_dir():
        with contextlib.suppress(OSError):
            # prometheus_client leaves mark_process_dead unannotated.
            _mp.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


def _prune_dead(path: Path) -> None:
    """Children killed without notice (SIGKILL, OOM) would count as active forever."""
    with contextlib.suppress(OSError):
        for entry in path.iterdir():
            match = _LIVE_FILE.match(entry.name)
            if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
                entry.unlink(missing_ok=True)


def merged_registry(path: Path) -> CollectorRegistry:
    """Every process's samples in `path` as one registry, dead children's live gauges dropped."""
    path.mkdir(parents=True, exist_ok=True)
    _prune_dead(path)
    merged = CollectorRegistry()
    # prometheus_client leaves MultiProcessCollector unannotated.
    _mp.MultiProcessCollector(merged, path=str(path))  # type: ignore[no-untyped-call]
    return merged
