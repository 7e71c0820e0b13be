"""Exceptions a job handler raises to tell the runner what to do next."""


class JobError(Exception):
    """Base of the errors the runner understands."""


class TransientJobError(JobError):
    """Worth retrying with backoff (a network blip, a busy SMTP server, a locked file)."""


class PermanentJobError(JobError):
    """Retrying cannot help (bad input, missing engine); the message is shown to the user."""


class JobCancelled(JobError):
    """The job was cancelled while it ran; the runner stops and discards partial output."""


class JobTimedOut(JobError):
    """The soft time limit was reached; the job ends `failed` with "timed out"."""
