"""Artifact files: moved into place atomically, addressed only by job id (never a client path)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from app.core.config import Settings
from app.core.files import fsync_dir, resolve_under
from app.jobs.context import ArtifactFile

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


def discard_scratch(settings: Settings, job_id: str) -> None:
    """Partial output of an attempt that did not finish (files or work directories)."""
    for leftover in scratch_dir(settings).glob(f"{job_id}-*"):
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def remove_job_files(settings: Settings, job_id: str) -> None:
    """Everything a job left on disk: its artifact, scratch files and mail ledger."""
    from app.notifications.ledger import remove_ledger

    shutil.rmtree(job_dir(settings, job_id), ignore_errors=True)
    discard_scratch(settings, job_id)
    remove_ledger(settings, job_id)
