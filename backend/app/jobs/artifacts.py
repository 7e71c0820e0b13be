"""Artifact files: moved into place atomically, addressed only by job id (never a client path)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from app.core.config import Settings
from app.core.errors import ConflictError, GoneError
from app.core.files import fsync_dir, resolve_under
from app.jobs.context import ArtifactFile
from app.jobs.models import ReportJob
from app.jobs.registry import kind_of
from app.jobs.states import JobStatus

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class StoredArtifact:
    relative_path: str
    filename: str
    mime_type: str
    size: int
    sha256: str


def scratch_dir(settings: Settings) -> Path:
    """Temp files live on the storage volume so the final move is a rename, not a copy."""
    return settings.storage_root / "tmp"


def job_dir(settings: Settings, job_id: str) -> Path:
    return settings.storage_root / "artifacts" / job_id


def safe_filename(name: str) -> str:
    cleaned = _UNSAFE.sub("_", Path(name).name).strip("._") or "artifact"
    return cleaned[:200]


def store(settings: Settings, job_id: str, artifact: ArtifactFile) -> StoredArtifact:
    """fsync the file, hash it, and `os.replace` it to its final name (same path on a re-run)."""
    filename = safe_filename(artifact.filename)
    target_dir = job_dir(settings, job_id)
    target_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with open(artifact.path, "rb+") as handle:
        os.fsync(handle.fileno())
        handle.seek(0)
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
            size += len(chunk)
    target = target_dir / filename
    os.replace(artifact.path, target)
    fsync_dir(target_dir)
    return StoredArtifact(
        relative_path=str(target.relative_to(settings.storage_root)),
        filename=filename,
        mime_type=artifact.mime_type,
        size=size,
        sha256=digest.hexdigest(),
    )


def resolve(settings: Settings, relative_path: str) -> Path:
    """The absolute path of a stored artifact; refuses anything outside the storage root."""
    return resolve_under(settings.storage_root, relative_path, "artifact")


class NoFileYet(ConflictError):
    """The job has no file to download (not completed, or it produces none)."""


class FileRemoved(GoneError):
    """The job completed, but its file was removed since (cleanup, or by hand)."""


def downloadable(settings: Settings, job: ReportJob) -> Path:
    """The file of a completed job, ready to send."""
    if job.status != JobStatus.COMPLETED or not job.artifact_path:
        raise NoFileYet(f"Job {job.id} has no file to download (status: {job.status}).")
    path = resolve(settings, job.artifact_path)
    if not path.is_file():
        raise FileRemoved("The file of this job was removed.")
    return path


def discard_scratch(settings: Settings, job_id: str) -> None:
    """Partial output of an attempt that did not finish (files or work directories)."""
    for leftover in scratch_dir(settings).glob(f"{job_id}-*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def remove_job_files(settings: Settings, job_id: str, job_type: str) -> None:
    """Everything a job left on disk: its artifact, scratch files, and what its kind keeps
    (the mail ledger of an e-mail job)."""
    shutil.rmtree(job_dir(settings, job_id), ignore_errors=True)
    discard_scratch(settings, job_id)
    for remove in kind_of(job_type).cleanups():
        remove(settings, job_id)
