"""A durable per-job record of which recipients were sent, so a retried job never resends.

Why an append-only JSON-lines file (one line per event) instead of a JSON document
rewritten after each batch: appending is O(1) per recipient, so the outcome of every message
is written the moment the server answers, not at the end of a batch. The window in which a
crash can lose a "sent" is then the few microseconds between the server's 250 reply and one
`write()`; the OS keeps that write even if the worker is killed, and each batch ends with an
fsync against power loss.

The crash-window choice (at most once): before handing a message over (DATA) a `sending`
line is written. If the job is retried and a recipient's last line is still `sending`, the
worker died while the server may have been accepting it; that recipient is reported as
`unknown` and **not** resent. A missed mail can be re-requested by a person who sees
`unknown`; a duplicate cannot be taken back. Deterministic Message-IDs (see `email.py`) let
mail systems that deduplicate collapse a duplicate if one ever slips through.

An exclusive `flock` keeps two workers (a redelivered task racing the original) from
sending the same job at once.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from app.core.config import Settings
from app.core.files import fsync_dir
from app.jobs.errors import PermanentJobError, TransientJobError

SENDING = "sending"
SENT = "sent"
FAILED = "failed"
DEFERRED = "deferred"
UNKNOWN = "unknown"
TERMINAL = frozenset({SENT, FAILED, UNKNOWN})

CRASHED_WHILE_SENDING = (
    "the worker stopped while this message was being handed to the SMTP server; it may have "
    "been delivered, so it is not sent again"
)

_JOB_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")


@dataclass(frozen=True)
class Entry:
    """The last thing recorded about one recipient."""

    status: str
    attempt: int
    code: int | None = None
    error: str | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def ledger_dir(settings: Settings) -> Path:
    return settings.storage_root / "ledgers"


def ledger_path(settings: Settings, job_id: str) -> Path:
    if not _JOB_ID.match(job_id):
        raise PermanentJobError(f"job id {job_id!r} cannot name a ledger file")
    return ledger_dir(settings) / f"{job_id}.jsonl"


def remove_ledger(settings: Settings, job_id: str) -> None:
    """Forget a job's ledger: only once the job itself is deleted (retention)."""
    if _JOB_ID.match(job_id):
        (ledger_dir(settings) / f"{job_id}.jsonl").unlink(missing_ok=True)


def remove_stale_ledgers(settings: Settings, *, older_than_seconds: float) -> int:
    """Delete ledgers untouched for a while (call from housekeeping with the job retention).

    A ledger must outlive its job's last possible retry, so it is not deleted on success.
    """
    cutoff = time.time() - older_than_seconds
    removed = 0
    for path in ledger_dir(settings).glob("*.jsonl"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


class Ledger:
    """Open with `Ledger.open(settings, job_id)` as a context manager."""

    def __init__(self, path: Path, fd: int, entries: dict[str, Entry], attempt: int) -> None:
        self.path = path
        self._fd = fd
        self.entries = entries
        self.attempt = attempt

    @classmethod
    def open(cls, settings: Settings, job_id: str, *, attempt: int) -> Ledger:
        path = ledger_path(settings, job_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        created = not path.exists()
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise TransientJobError(
                f"job {job_id} is already being sent by another worker; it will be retried"
            ) from None
        try:
            entries = _replay(path)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                os.write(fd, b"\n")  # a torn last line must not swallow the next record
            if created:
                fsync_dir(path.parent)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, entries, attempt)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def begin(self, key: str) -> None:
        """Written just before DATA: from here on, a crash leaves the outcome unknown."""
        self._append(key, SENDING)

    def record(
        self, key: str, status: str, *, code: int | None = None, error: str | None = None
    ) -> Entry:
        return self._append(key, status, code=code, error=error)

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)  # closing releases the flock
                self._fd = -1

    def _append(
        self, key: str, status: str, *, code: int | None = None, error: str | None = None
    ) -> Entry:
        entry = Entry(status=status, attempt=self.attempt, code=code, error=error)
        line: dict[str, Any] = {
            "k": key,
            "s": status,
            "a": self.attempt,
            "t": round(time.time(), 3),
        }
        if code is not None:
            line["c"] = code
        if error is not None:
            line["e"] = error[:500]
        # One write() of one line: O_APPEND makes it land whole at the end of the file.
        os.write(self._fd, (json.dumps(line, separators=(",", ":")) + "\n").encode())
        self.entries[key] = entry
        return entry


def _replay(path: Path) -> dict[str, Entry]:
    """The last entry per key; a trailing `sending` means the worker died mid-send."""
    entries: dict[str, Entry] = {}
    with path.open("rb") as fh:
        for raw in fh:
            try:
                line = json.loads(raw)
                key, status, attempt = str(line["k"]), str(line["s"]), int(line["a"])
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash
            entries[key] = Entry(
                status=status, attempt=attempt, code=line.get("c"), error=line.get("e")
            )
    for key, entry in entries.items():
        if entry.status == SENDING:
            entries[key] = Entry(status=UNKNOWN, attempt=entry.attempt, error=CRASHED_WHILE_SENDING)
    return entries
