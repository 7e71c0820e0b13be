"""Artifact files: built on the worker's scratch disk, kept in the object store under
`artifacts/<job_id>/<attempt>/<filename>`, addressed only by job id (never a client path).

Everything an attempt writes is named by its attempt: its scratch files
(`<job_id>-<attempt>-*`, `JobContext.scratch_prefix`) and its object. An attempt that was
taken over while it still ran (a frozen worker that came back) removes only its own, never
the live attempt's; the attempt that completes the job removes what earlier ones left.

The `artifact_path` column holds the key; older rows hold `artifacts/<job_id>/<filename>`
(or the same string as a path relative to the storage root), which still resolve.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.core.config import Settings
from app.core.errors import ConflictError, GoneError
from app.jobs.context import ArtifactFile
from app.jobs.models import ReportJob
from app.jobs.registry import kind_of
from app.jobs.states import JobStatus
from app.storage import ObjectMissing, StorageError, get_store

log = logging.getLogger(__name__)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class StoredArtifact:
    relative_path: str
    """The storage key (the `artifact_path` column)."""
    filename: str
    mime_type: str
    size: int
    sha256: str


def scratch_dir(settings: Settings) -> Path:
    """This host's scratch directory (SCRATCH_DIR): handlers build files here; never shared."""
    return settings.scratch_dir


def job_prefix(job_id: str) -> str:
    return f"artifacts/{job_id}/"


def attempt_prefix(job_id: str, attempt: int) -> str:
    return f"{job_prefix(job_id)}{attempt}/"


def safe_filename(name: str) -> str:
    cleaned = _UNSAFE.sub("_", Path(name).name).strip("._") or "artifact"
    return cleaned[:200]


def store(
    settings: Settings, job_id: str, artifact: ArtifactFile, *, attempt: int
) -> StoredArtifact:
    """Hash the built file and put it in the store under the attempt's own key (a late
    attempt that was taken over cannot overwrite the live one's); the local file is gone
    afterwards. Raises `StorageUnavailable` (retry) or another `StorageError`."""
    filename = safe_filename(artifact.filename)
    digest = hashlib.sha256()
    size = 0
    with open(artifact.path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    key = attempt_prefix(job_id, attempt) + filename
    try:
        get_store(settings).put_file(key, artifact.path, artifact.mime_type, move=True)
    finally:
        artifact.path.unlink(missing_ok=True)
    return StoredArtifact(
        relative_path=key,
        filename=filename,
        mime_type=artifact.mime_type,
        size=size,
        sha256=digest.hexdigest(),
    )


def resolve(settings: Settings, relative_path: str) -> Path:
    """The local file of an artifact key in a `file://` store; refuses a key outside it
    (ValueError). A remote store has no local file: ValueError as well."""
    path = get_store(settings).local_path(relative_path)
    if path is None:
        raise ValueError("artifacts of a remote store have no local path")
    return path


class NoFileYet(ConflictError):
    """The job has no file to download (not completed, or it produces none)."""


class FileRemoved(GoneError):
    """The job completed, but its file was removed since (cleanup, or by hand)."""


@dataclass(frozen=True)
class Download:
    """An artifact opened for sending: a local file (`file://`, sent with range support)
    or a stream of chunks from the store, with its exact length."""

    filename: str
    media_type: str
    size: int
    path: Path | None = None
    chunks: Iterator[bytes] | None = None


def downloadable(settings: Settings, job: ReportJob) -> Download:
    """The file of a completed job, ready to send; `FileRemoved` if the store lost it.

    The object is opened (and its size read) before anything is sent, so a missing one is a
    clean 410, not a response cut off midway.
    """
    if job.status != JobStatus.COMPLETED or not job.artifact_path:
        raise NoFileYet(f"Job {job.id} has no file to download (status: {job.status}).")
    key = job.artifact_path
    filename = job.artifact_name or Path(key).name
    media_type = job.artifact_mime or "application/octet-stream"
    objects = get_store(settings)
    local = objects.local_path(key)
    try:
        if local is not None:
            if not local.is_file():
                raise ObjectMissing(key)
            return Download(filename, media_type, local.stat().st_size, path=local)
        size = objects.size(key)
        return Download(filename, media_type, size, chunks=objects.read_chunks(key))
    except ObjectMissing:
        raise FileRemoved("The file of this job was removed.") from None


def scratch_prefix(job_id: str, attempt: int) -> str:
    """How an attempt's scratch files and directories begin."""
    return f"{job_id}-{attempt}-"


def discard_scratch(settings: Settings, job_id: str, attempt: int | None = None) -> None:
    """Partial output on this host (files or work directories) of one attempt, or of
    every attempt when `attempt` is None (the job is final, or gone)."""
    prefix = f"{job_id}-" if attempt is None else scratch_prefix(job_id, attempt)
    try:  # a prefix match, not `Path.glob`, which compiles a pattern per job id
        entries = list(os.scandir(scratch_dir(settings)))
    except FileNotFoundError:
        return
    for leftover in entries:
        if not leftover.name.startswith(prefix):
            continue
        if leftover.is_dir(follow_symlinks=False):
            shutil.rmtree(leftover.path, ignore_errors=True)
        else:
            Path(leftover.path).unlink(missing_ok=True)


def discard_attempt(settings: Settings, job_id: str, attempt: int, *, stored: bool) -> None:
    """What one attempt that did not complete the job left: its scratch files and, if it
    got as far as storing, its object. Best effort: an object the store cannot delete now
    is removed by the attempt that completes the job, or by retention."""
    discard_scratch(settings, job_id, attempt)
    if stored:
        _delete_quietly(settings, attempt_prefix(job_id, attempt))


def discard_earlier(settings: Settings, job_id: str, attempt: int) -> None:
    """After `attempt` completed the job: what earlier attempts left (one killed between
    storing and recording, one whose clean-up met an outage), objects and scratch."""
    for earlier in range(1, attempt):
        _delete_quietly(settings, attempt_prefix(job_id, earlier))
        discard_scratch(settings, job_id, earlier)


def _delete_quietly(settings: Settings, prefix: str) -> None:
    try:
        get_store(settings).delete_prefix(prefix)
    except StorageError as exc:
        log.warning("could not delete %s (%s); retention removes it", prefix, exc)


def remove_job_files(settings: Settings, job_id: str, job_type: str) -> None:
    """Everything a job left: its stored objects (wherever the store is), this host's
    scratch files, and what its kind keeps (the mail ledger of an e-mail job).

    Raises a `StorageError` when the store could not delete; deleting nothing is fine.
    """
    get_store(settings).delete_prefix(job_prefix(job_id))
    discard_scratch(settings, job_id)
    for remove in kind_of(job_type).cleanups():
        remove(settings, job_id)
