"""Server settings, read once from the environment (`RUNYARD_*`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._budgets import RunLimits

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RUNYARD_", extra="ignore")

    database_url: str = "sqlite+aiosqlite:///./.runyard/runyard.db"
    """SQLAlchemy async URL. Default: a SQLite file under `./.runyard/`."""
    db_pool_size: int = Field(default=5, ge=1)
    """PostgreSQL connections a process keeps open. Default 5."""
    db_max_overflow: int = Field(default=10, ge=0)
    """Extra PostgreSQL connections a process may open under load. Default 10."""
    bus: str | None = None
    """`local`, `postgres` (LISTEN/NOTIFY) or `redis://…`. Default: local on SQLite, postgres on PostgreSQL."""
    host: str = "127.0.0.1"
    """Address `runyard serve` binds. Default 127.0.0.1."""
    port: int = 8321
    """Port `runyard serve` binds. Default 8321."""
    api_key: str | None = None
    """Presets the bootstrap admin key created on first start. Default: a random key."""
    routes: Path | None = None
    """A TOML file mapping route ids to models. Default: none (model strings work directly)."""
    lease_seconds: float = Field(default=10.0, gt=0)
    """How long a worker owns a run without renewing. Default 10 s."""
    worker_concurrency: int = Field(default=1024, ge=1)
    """Runs one worker executes at once. Default 1024 (runs mostly wait on I/O)."""
    poll_interval: float = Field(default=1.0, gt=0)
    """Claim-loop poll fallback when no wake-up arrives. Default 1 s."""
    rate_limit: float | None = Field(default=None, gt=0)
    """Requests per second one API key may make (a token bucket, shared by the API nodes on
    PostgreSQL); past it 429 with `Retry-After`. Default: unlimited."""
    rate_limit_burst: int | None = Field(default=None, ge=1)
    """Requests a key may make at once before `rate_limit` paces it. Default: twice the rate (at least 1)."""
    max_concurrent_runs: int | None = Field(default=None, ge=1)
    """Runs one org may have `running` at once, across all workers; the rest wait `pending`, in order.
    Default: unlimited."""
    max_attempts: int = Field(default=3, ge=1)
    """A run whose lease expired this many times fails. Default 3."""
    flush_interval: float = Field(default=0.01, gt=0)
    """Token deltas are committed in batches at most this far apart. Default 10 ms."""
    sse_heartbeat: float = Field(default=15.0, gt=0)
    """Seconds of silence after which an SSE stream sends a `: ping` comment. Default 15."""
    retention_days: float | None = Field(default=None, gt=0)
    """Ended runs (with their events, checkpoints, tool journal and waits) are deleted this many
    days after they ended. Default: unset, kept forever."""
    idempotency_key_hours: float = Field(default=24.0, gt=0)
    """How long an `Idempotency-Key` is honoured; older keys are ignored and deleted. Default 24 h."""
    http_get_timeout: float = 10.0
    """Time limit of the `http_get` tool. Default 10 s."""
    http_get_max_bytes: int = 256 * 1024
    """Size limit of the `http_get` tool's response. Default 256 KiB."""
    http_get_allow_private: bool = False
    """Let `http_get` reach private and loopback addresses. Default false (refused)."""

    files: str = "db"
    """Where file content is kept: `db` (in the database) or `s3://bucket/prefix` (any S3-compatible
    store; credentials and endpoint from the usual `AWS_*` variables). Default `db`."""
    files_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    """Largest file a run may write or a caller upload. Default 10 MB."""
    files_max_thread_bytes: int = Field(default=100 * 1024 * 1024, ge=1)
    """Total size of one thread's files. Default 100 MB."""
    files_max_thread_files: int = Field(default=1000, ge=1)
    """Files in one thread's workspace. Default 1,000."""
    mcp_stdio: bool = False
    """Allow agents to start stdio MCP servers (a command on the worker's machine). Default false."""
    mcp_allow_private: bool = False
    """Let MCP server URLs point at private and loopback addresses. Default false (refused)."""
    mcp_timeout: float = Field(default=30.0, gt=0)
    """Seconds to connect to an MCP server, and to wait for one tool call. Default 30."""

    webhooks_allow_private: bool = False
    """Let webhook URLs (endpoints and runs' `webhook_url`) point at private and loopback addresses.
    Default false (refused when saved, and again when sent)."""
    webhooks_timeout: float = Field(default=10.0, gt=0)
    """Seconds a webhook receiver has to answer one delivery. Default 10."""
    webhooks_retry_delays: list[float] = Field(default=[5, 300, 1800, 7200, 18000, 36000, 50400], min_length=1)
    """Seconds before each retry of a failed delivery (±20% jitter); after the last, it fails.
    Default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h: about a day and a half in all."""
    webhooks_disable_after: float = Field(default=3 * 86400, gt=0)
    """An endpoint whose deliveries have failed this many seconds since its last success is
    disabled (and a `webhook.disabled` event recorded). Default 3 days."""
    webhooks_concurrency: int = Field(default=64, ge=1)
    """Deliveries one worker sends at once. Default 64."""

    default_limits: RunLimits | None = None
    """The org-wide budgets of every run, as JSON (`{"max_cost_usd": 5, "max_duration_s": 600}`); a run's
    or its agent's smaller limits win. Default: none."""
    credits_per_usd: float = Field(default=1000.0, gt=0)
    """`usage.credits_used` = cost × this, rounded up to whole credits. Default 1000."""
    log_format: Literal["text", "json"] = "text"
    """`json`: one JSON object per log line, with `run_id`, `trace_id`, `worker_id` where known. Default text."""
    log_level: str = "INFO"
    """The level of Runyard's own loggers (`DEBUG`, `INFO`, `WARNING`, …). Default INFO."""
    metrics_token: str | None = None
    """When set, `GET /metrics` needs `Authorization: Bearer <token>`. Default: open."""
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    """`runyard worker` serves its Prometheus metrics on this port (`/metrics`, bound to `host`, no
    token: keep it on a private network). Default: unset, no listener. API nodes use `GET /metrics`."""
    otel: bool = False
    """Export OpenTelemetry traces over OTLP/HTTP (configured by the standard `OTEL_*` variables). Also on
    when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; off with `OTEL_SDK_DISABLED=true`. Default false."""

    @field_validator("files")
    @classmethod
    def _files_backend(cls, value: str) -> str:
        # Refused when the process starts, not at the first upload or file tool call.
        if value != "db" and not (value.startswith("s3://") and value[len("s3://") :].split("/", 1)[0]):
            raise ValueError("RUNYARD_FILES must be 'db' or 's3://bucket[/prefix]'")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
