"""The one place configuration is read: every setting comes from the environment (or `.env`).

Workers and the API read the same variables, so a worker started with the API's environment
shares its database and storage root.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Environment = Literal["dev", "test", "prod"]
BackendChoice = Literal["auto", "celery", "rq", "local"]


def _project_root() -> Path | None:
    """The checkout holding `backend/` (this file is `backend/app/core/config.py`), or None
    when the package is installed non-editable in site-packages: there is no project root
    then, and relative paths fall back to the current directory."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "backend" / "pyproject.toml").is_file() else None


PROJECT_ROOT = _project_root()


def anchored(path: Path) -> Path:
    """A relative path against the project root (else the current directory), so the API,
    `reportctl` and `celery_manager.py` find the same files from whatever directory they
    start in."""
    return ((PROJECT_ROOT or Path.cwd()) / path).resolve()  # an absolute `path` stays itself


class Settings(BaseSettings):
    """Service settings; names are the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(
        env_file=anchored(Path(".env")), extra="ignore", case_sensitive=False
    )

    ENVIRONMENT: Environment = "dev"

    # Storage: the SQLite file and artifacts live under VAR_DIR unless overridden. A relative
    # VAR_DIR is anchored at the project root (see `anchored`), not the current directory.
    VAR_DIR: Path = Path("var")
    DATABASE_URL: str = ""
    # Where uploads and artifacts live, shared by the API and every worker:
    # `file:///abs/path` (default `<VAR_DIR>/storage`) or `s3://bucket/prefix`. For S3, boto3
    # reads AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_DEFAULT_REGION
    # from the environment itself: they are no settings here, so nothing here echoes them.
    STORAGE_URL: str = ""
    STORAGE_ROOT: Path | None = None
    """The older name of a `file://` STORAGE_URL (used when STORAGE_URL is unset)."""
    # This host's own scratch space (staged inputs, files being built); never shared.
    SCRATCH_DIR: Path | None = None

    # HTTP
    HOST: str = "127.0.0.1"
    PORT: int = 8000
    # API processes of one `reportctl serve` (uvicorn workers sharing the port; `--workers`).
    # One of them runs the embedded executor and the relay's passes (app/jobs/local_executor.py).
    API_WORKERS: int = Field(default=1, ge=1, le=64)
    MAX_JSON_BODY_BYTES: int = 1024 * 1024
    MAX_UPLOAD_BYTES: int = 200 * 1024 * 1024
    PUBLIC_BASE_URL: str = ""
    # Signs download links that open without a token (HMAC-SHA256). Required in prod; every
    # API process and worker of one deployment must share it.
    SECRET_KEY: SecretStr = SecretStr("")
    DOWNLOAD_LINK_TTL_SECONDS: int = 7 * 24 * 3600

    # Job backends
    JOB_BACKEND: BackendChoice = "auto"
    CELERY_BROKER_URL: str = ""
    CELERY_RESULT_BACKEND: str = ""
    RQ_REDIS_URL: str = ""
    BROKER_PUBLISH_TIMEOUT_SECONDS: float = 1.0
    # Redis redelivers an unacknowledged message after this long; it must exceed the hard
    # time limit plus the longest backoff, or a running job would be delivered twice.
    BROKER_VISIBILITY_TIMEOUT_SECONDS: float | None = None
    VISIBILITY_MARGIN_SECONDS: float = 300.0
    BEAT_RELAY_SECONDS: float = 15.0
    HEALTH_CHECK_SECONDS: float = 300.0
    SCHEDULE_MAX_FAILURES: int = 3
    """A report schedule whose runs fail this many times in a row pauses itself (app/schedules)."""
    CIRCUIT_BREAKER_COOLDOWN_SECONDS: float = 10.0

    # Embedded (local) executor
    LOCAL_WORKERS: int = 2
    LOCAL_POLL_SECONDS: float = 1.0

    # Retry policy, shared by every backend: delay = base * 2**(attempt-1).
    JOB_MAX_RETRIES: int = 3
    JOB_RETRY_BACKOFF_SECONDS: float = 60.0
    JOB_RETRY_BACKOFF_MAX_SECONDS: float = 3600.0

    # Time limits (seconds) and liveness.
    JOB_SOFT_TIME_LIMIT_SECONDS: int = 25 * 60
    JOB_HARD_TIME_LIMIT_SECONDS: int = 30 * 60
    JOB_HEARTBEAT_SECONDS: float = 5.0
    JOB_HEARTBEAT_TIMEOUT_SECONDS: float = 60.0
    RELAY_INTERVAL_SECONDS: float = 5.0
    # How often the API asks the brokers which queues have a worker (a job queued where none
    # has says so in its status; /health/ready lists those queues).
    CONSUMER_CHECK_SECONDS: float = 30.0
    OUTBOX_GRACE_SECONDS: float = 2.0

    # Housekeeping
    JOB_RETENTION_DAYS: float = 7.0

    # Health: the storage root must keep this much free space.
    DISK_MIN_FREE_BYTES: int = 1024**3
    DISK_MIN_FREE_PERCENT: float = 5.0

    # Workers
    WORKER_MAX_MEMORY_PER_CHILD_KB: int = 1_000_000
    WORKER_METRICS_PORT: int = 9808
    # Interface of a Celery worker's metrics endpoint: loopback unless a scraper on another
    # host needs it (then a private interface, never a public one: it has no token).
    WORKER_METRICS_HOST: str = "127.0.0.1"
    # Ports tried from WORKER_METRICS_PORT upward: several workers on one host each take the
    # first free one (logged, and written to `metrics-port` in the worker's multiprocess dir).
    WORKER_METRICS_PORT_SPAN: int = 32
    # When set, GET /metrics requires `Authorization: Bearer <METRICS_TOKEN>`; when empty it
    # is open (bind the API privately or set it).
    METRICS_TOKEN: SecretStr = SecretStr("")
    PROMETHEUS_MULTIPROC_DIR: Path | None = None
    # How long an API process remembers which user a bearer token belongs to (no query per
    # request): a token revoked elsewhere stops working within this time; 0 turns it off.
    AUTH_CACHE_SECONDS: float = Field(default=5.0, ge=0, le=60)

    # Flower
    FLOWER_USER: str = ""
    FLOWER_PASSWORD: SecretStr = SecretStr("")

    # Mail
    SMTP_HOST: str = ""
    SMTP_PORT: int = 25
    SMTP_USER: str = ""
    SMTP_PASSWORD: SecretStr = SecretStr("")
    SMTP_SECURITY: Literal["none", "starttls", "tls"] = "none"
    SMTP_TIMEOUT_SECONDS: float = 10.0
    MAIL_FROM: str = "reports@localhost"
    MAIL_RATE_PER_SECOND: float = 50.0
    MAIL_BATCH_SIZE: int = 100
    # Templates sent through the API render under these limits (app/notifications/sandbox.py)
    TEMPLATE_MAX_OUTPUT_BYTES: int = 1_000_000
    TEMPLATE_MAX_LOOP: int = 10_000
    TEMPLATE_MAX_OPERATIONS: int = 1_000_000
    # Domains a non-admin may mail (comma-separated, e.g. "example.com,corp.example"; a
    # subdomain needs its own entry). Empty: a non-admin may mail only their own address.
    MAIL_ALLOWED_DOMAINS: str = ""
    # Recipients a user may address per UTC day, over all their mail jobs (0: no cap).
    MAIL_RECIPIENTS_PER_DAY: int = 1000
    ADMIN_EMAILS: list[str] = Field(default_factory=list)

    # Documents
    TESSERACT_CMD: str = "tesseract"
    OCR_LANGUAGES: str = "eng"
    DOCUMENT_MAX_PAGES: int = 200
    # Pixels of one image frame (Pillow's MAX_IMAGE_PIXELS) and of all frames of one upload,
    # both checked from the headers before any pixel is decoded.
    DOCUMENT_MAX_PIXELS: int = 64_000_000
    DOCUMENT_MAX_TOTAL_PIXELS: int = 256_000_000
    # Images decoded at once by one API process to confirm an upload is not corrupt.
    DOCUMENT_DECODE_CONCURRENCY: int = 2

    # Datasets (uploads) and report outputs
    DATASET_MAX_ROWS: int = 20_000_000
    DATASET_MAX_COLUMNS: int = 1_000
    DATASET_MAX_LINE_BYTES: int = 1024 * 1024
    """The longest CSV line accepted (DuckDB's max_line_size; also pre-scanned)."""
    REPORT_MAX_ROWS: int = 10_000_000
    """Rows of a demo dataset a report may generate."""
    REPORT_MAX_EXCEL_ROWS: int = 3_145_725
    """Rows an Excel workbook's Data sheets may hold: three full sheets of 1,048,575."""
    THUMBNAIL_SIZES: list[int] = Field(default_factory=lambda: [128, 256, 512])

    # Per-user quotas and fair shares (app/jobs/admission.py, app/jobs/fairness.py,
    # app/quotas/); 0 turns one off. Over a limit a request gets 429 with Retry-After.
    QUOTA_ACTIVE_JOBS: int = 4
    """A user's jobs handed to workers at once (queued on a backend, running, retrying).
    More are accepted and wait `pending` for a slot: never refused, released fairly."""
    QUOTA_QUEUED_JOBS: int = 1000
    """A user's unfinished jobs (waiting or active); one more is refused."""
    QUOTA_SUBMISSIONS_PER_MINUTE: int = 600
    QUOTA_STORED_BYTES: int = 20 * 1024**3
    """Bytes of a user's results and uploads kept in the object store."""

    # Completion webhooks (app/webhooks/): signed POSTs of a final job to its `webhook_url`.
    WEBHOOK_SECRET: SecretStr = SecretStr("")
    """Signs every webhook body (HMAC-SHA256); outside prod a fixed development key if unset."""
    WEBHOOK_ALLOW_PRIVATE: bool = False
    """Allow private, loopback and link-local targets (SSRF guard off: tests, one-host setups)."""
    WEBHOOK_MAX_ATTEMPTS: int = 5
    WEBHOOK_BACKOFF_SECONDS: float = 30.0
    """Before retry n: this times 2**(n-1), at most an hour."""
    WEBHOOK_TIMEOUT_SECONDS: float = 5.0
    WEBHOOK_MAX_AGE_SECONDS: float = 24 * 3600.0
    """A job that finished longer ago than this gets no first delivery (the pass's window)."""
    WEBHOOK_BATCH: int = 16
    """Deliveries per relay pass, sent in parallel."""

    LOG_LEVEL: str = "INFO"

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        if self.ENVIRONMENT == "test":
            # The test profile keeps the production shape with short clocks.
            for name, value in _TEST_PROFILE.items():
                if name not in self.model_fields_set:
                    setattr(self, name, value)
        self.VAR_DIR = anchored(self.VAR_DIR)
        if not self.DATABASE_URL:
            self.DATABASE_URL = f"sqlite:///{self.VAR_DIR / 'reports.db'}"
        if not self.STORAGE_URL:
            self.STORAGE_URL = f"file://{anchored(self.STORAGE_ROOT or self.VAR_DIR / 'storage')}"
        if self.STORAGE_ROOT is None:
            local = self.STORAGE_URL.startswith("file://")
            self.STORAGE_ROOT = Path(self.STORAGE_URL[7:]) if local else self.VAR_DIR / "storage"
        self.STORAGE_ROOT = anchored(self.STORAGE_ROOT)
        self.SCRATCH_DIR = anchored(self.SCRATCH_DIR or self.VAR_DIR / "scratch")
        if self.ENVIRONMENT == "prod" and not self.SECRET_KEY.get_secret_value():
            raise ValueError(
                "SECRET_KEY must be set in prod: it signs download links (use a long random "
                "string, the same for every API process and worker)"
            )
        if self.ENVIRONMENT == "prod" and self.FLOWER_USER and not self.FLOWER_PASSWORD:
            raise ValueError("FLOWER_PASSWORD must be set in prod when FLOWER_USER is set")
        return self

    @property
    def storage_root(self) -> Path:
        """The local directory of a `file://` storage (for S3, `<VAR_DIR>/storage`, unused
        by the object store)."""
        assert self.STORAGE_ROOT is not None
        return self.STORAGE_ROOT

    @property
    def storage_url(self) -> str:
        return self.STORAGE_URL

    @property
    def scratch_dir(self) -> Path:
        assert self.SCRATCH_DIR is not None
        return self.SCRATCH_DIR

    @property
    def link_key(self) -> bytes:
        """The key of signed download links; outside prod a fixed development key."""
        return (self.SECRET_KEY.get_secret_value() or _DEV_SECRET_KEY).encode()

    @property
    def is_sqlite(self) -> bool:
        return self.DATABASE_URL.startswith("sqlite")

    @property
    def embedded(self) -> bool:
        """No broker configured at all: the service runs jobs itself (`make run`)."""
        return self.JOB_BACKEND == "local" or (not self.CELERY_BROKER_URL and not self.RQ_REDIS_URL)

    def retry_delay(self, attempt: int) -> float:
        """Backoff before retry number `attempt` (1-based): 60, 120, 240 s by default."""
        delay = self.JOB_RETRY_BACKOFF_SECONDS * (2 ** max(attempt - 1, 0))
        return float(min(delay, self.JOB_RETRY_BACKOFF_MAX_SECONDS))

    def webhook_delay(self, attempt: int) -> float:
        """Backoff after failed webhook attempt `attempt` (1-based)."""
        return float(min(self.WEBHOOK_BACKOFF_SECONDS * (2 ** max(attempt - 1, 0)), 3600.0))

    @property
    def webhook_key(self) -> bytes:
        return (self.WEBHOOK_SECRET.get_secret_value() or _DEV_WEBHOOK_SECRET).encode()

    @property
    def max_attempts(self) -> int:
        return self.JOB_MAX_RETRIES + 1

    @property
    def longest_backoff(self) -> float:
        return self.retry_delay(self.JOB_MAX_RETRIES)

    @property
    def publish_grace(self) -> float:
        """How long a `queued` row may wait for its publish (bounded by the publish timeout,
        after which a failed publish moves it back to `pending`) before the relay asks the
        broker whether it got the message."""
        return self.OUTBOX_GRACE_SECONDS + 2 * self.BROKER_PUBLISH_TIMEOUT_SECONDS

    @property
    def visibility_timeout(self) -> float:
        """Checked at start-up: above the hard limit plus the longest backoff."""
        floor = self.JOB_HARD_TIME_LIMIT_SECONDS + self.longest_backoff
        value = self.BROKER_VISIBILITY_TIMEOUT_SECONDS or floor + self.VISIBILITY_MARGIN_SECONDS
        if value <= floor:
            raise ValueError(
                f"BROKER_VISIBILITY_TIMEOUT_SECONDS={value:g} must exceed the hard time limit "
                f"plus the longest backoff ({floor:g} s), or running jobs get delivered twice"
            )
        return value


# Only where SECRET_KEY is unset outside prod (dev, test): links signed with it prove nothing.
_DEV_SECRET_KEY = "development-only-download-link-key"
_DEV_WEBHOOK_SECRET = "development-only-webhook-secret"

_TEST_PROFILE: dict[str, object] = {
    "JOB_RETRY_BACKOFF_SECONDS": 0.2,
    "JOB_SOFT_TIME_LIMIT_SECONDS": 60,
    "JOB_HARD_TIME_LIMIT_SECONDS": 90,
    "JOB_HEARTBEAT_SECONDS": 0.5,
    "JOB_HEARTBEAT_TIMEOUT_SECONDS": 5.0,
    "RELAY_INTERVAL_SECONDS": 0.5,
    "CONSUMER_CHECK_SECONDS": 2.0,
    "OUTBOX_GRACE_SECONDS": 0.5,
    "LOCAL_POLL_SECONDS": 0.2,
    "CIRCUIT_BREAKER_COOLDOWN_SECONDS": 1.0,
    "VISIBILITY_MARGIN_SECONDS": 10.0,
    "BEAT_RELAY_SECONDS": 1.0,
    "WEBHOOK_BACKOFF_SECONDS": 0.3,
}

_override: Settings | None = None


@lru_cache(maxsize=1)
def _from_env() -> Settings:
    return Settings()


def get_settings() -> Settings:
    """The active settings: an explicit override (tests, spawned workers) or the environment."""
    return _override if _override is not None else _from_env()


def set_settings(settings: Settings | None) -> None:
    """Install settings for this process (used by tests and by spawned local workers)."""
    global _override
    _override = settings
    _from_env.cache_clear()
