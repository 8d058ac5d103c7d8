"""The schema: one SQLAlchemy Core MetaData for SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, get_args

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB

from .._webhooks import DeliveryStatus
from ..domain import ACTIVE_STATUSES, TERMINAL_STATUSES, RunStatus, WaitKind, WaitStatus

__all__ = [
    "ACTIVE",
    "DELIVERY_STATUSES",
    "TERMINAL",
    "WAIT_KINDS",
    "WAIT_STATUSES",
    "agent_versions",
    "agents",
    "api_keys",
    "checkpoints",
    "events",
    "file_blobs",
    "files",
    "idempotency_keys",
    "memories",
    "metadata",
    "orgs",
    "rate_limits",
    "run_files",
    "runs",
    "threads",
    "tool_calls",
    "usage_daily",
    "waits",
    "webhook_deliveries",
    "webhooks",
]

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = JSON().with_variant(JSONB(), "postgresql")


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC: SQLite has no time zones, so both dialects agree."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def _sql_list(values: Any) -> str:
    return ", ".join(f"'{v}'" for v in values)


ACTIVE = tuple(s.value for s in RunStatus if s in ACTIVE_STATUSES)
"""Run statuses (as stored) that still hold their thread: pending, running, waiting."""
TERMINAL = tuple(s.value for s in RunStatus if s in TERMINAL_STATUSES)
"""Run statuses (as stored) that never change again: completed, failed, cancelled."""
WAIT_KINDS: tuple[str, ...] = get_args(WaitKind)
WAIT_STATUSES = tuple(s.value for s in WaitStatus)
DELIVERY_STATUSES: tuple[str, ...] = get_args(DeliveryStatus)

orgs = Table(
    "orgs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    # The org's default webhook secret (signs deliveries to runs' own `webhook_url`), made on first use.
    Column("webhook_secret", String(100)),
    Column("webhook_previous_secret", String(100)),
    Column("webhook_previous_secret_until", UTCDateTime),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=False),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("name", String(200), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Refused from then on (null: never expires).
    Column("expires_at", UTCDateTime),
    # Refused once revoked: every node re-reads a key at least every second.
    Column("revoked_at", UTCDateTime),
    # When a request last used it, to the minute.
    Column("last_used_at", UTCDateTime),
)

agents = Table(
    "agents",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("instructions", Text, nullable=False),
    Column("model", String(200), nullable=False),
    Column("route_id", String(200)),
    Column("tools", Json, nullable=False),
    Column("input_description", Text),
    Column("output_description", Text),
    Column("input_schema", Json),
    Column("output_schema", Json),
    Column("message_template", Text),
    Column("mcp_servers", Json, nullable=False, server_default="[]"),
    Column("client_tools", Json, nullable=False, server_default="[]"),
    # Budgets of the agent's runs (`RunLimits`); null: none of its own.
    Column("limits", Json),
    # The newest of its `agent_versions`.
    Column("version", Integer, nullable=False, server_default="1"),
    Column("metadata", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("org_id", "name"),
)

usage_daily = Table(
    "usage_daily",
    metadata,
    # What the runs that ended used, by the UTC day they were created on and what they ran: the
    # usage report reads whole days here instead of every run. `bucket`: the runs' duration on a
    # log scale (`store.usage.bucket_of`; -1 never started), for the p50/p95.
    Column("org_id", String(40), nullable=False),
    Column("day", String(10), nullable=False),
    Column("agent_id", String(40), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("model", String(200), nullable=False),
    Column("route_id", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("bucket", Integer, nullable=False),
    Column("runs", Integer, nullable=False),
    Column("requests", BigInteger, nullable=False),
    Column("tool_calls", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("reasoning_tokens", BigInteger, nullable=False),
    Column("cost_usd", Float, nullable=False),
    Column("unpriced_runs", Integer, nullable=False),
    Column("credits_used", BigInteger, nullable=False),
    PrimaryKeyConstraint("org_id", "day", "agent_id", "user_id", "model", "route_id", "status", "bucket"),
)

agent_versions = Table(
    "agent_versions",
    metadata,
    # No foreign key: an agent's versions go with it, and its runs keep their own snapshot.
    Column("agent_id", String(40), nullable=False),
    Column("version", Integer, nullable=False),
    Column("org_id", String(40), nullable=False),
    # The name and the `VERSIONED_FIELDS` as they were (MCP secrets included: runs need them).
    Column("snapshot", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("agent_id", "version"),
)

threads = Table(
    "threads",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=False),
    Column("user_id", String(200)),
    Column("metadata", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "org_id", "id"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=False),
    # No foreign key: deleting an agent keeps its runs' history.
    Column("agent_id", String(40), nullable=False),
    Column("thread_id", String(40), ForeignKey("threads.id"), nullable=False),
    Column("status", String(16), nullable=False),
    Column("waiting_for", String(16)),
    Column("original_prompt", Text, nullable=False),
    # What `original_prompt` was rendered from (the agent's message_template), if anything.
    Column("variables", Json),
    Column("config", Json, nullable=False),
    Column("output", Json),
    Column("error", Text),
    # Why a terminal run ended (`StopReason`); null while it is active.
    Column("stop_reason", String(20)),
    # The agent's version the run executes (its config is that version's snapshot).
    Column("agent_version", Integer),
    Column("user_id", String(200)),
    Column("metadata", Json, nullable=False),
    Column("model", String(200), nullable=False),
    Column("route_id", String(200)),  # the route that serves it first (null: a model string)
    Column("usage", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("started_at", UTCDateTime),
    Column("completed_at", UTCDateTime),
    Column("failed_at", UTCDateTime),
    Column("cancelled_at", UTCDateTime),
    # Claims so far (each resume after a pause is a claim too).
    Column("attempt", Integer, nullable=False, default=0),
    # Leases that expired (crashed or stuck workers): the reaper fails the run at max_attempts.
    Column("lost_leases", Integer, nullable=False, server_default="0"),
    Column("worker_id", String(80)),
    # Epoch seconds on the database's clock (never a worker's).
    Column("lease_until", Float),
    Column("cancel_requested", Boolean, nullable=False, default=False),
    Column("trace_id", String(32), nullable=False),
    Column("last_seq", BigInteger, nullable=False, default=0),
    # Follow-up messages (`POST /runs/{id}/messages`) not yet in a checkpoint.
    Column("pending_messages", Json, nullable=False, server_default="[]"),
    CheckConstraint(f"status IN ({_sql_list(s.value for s in RunStatus)})", name="status"),
    CheckConstraint(
        f"(status IN ({_sql_list(TERMINAL)})) = "
        "(completed_at IS NOT NULL OR failed_at IS NOT NULL OR cancelled_at IS NOT NULL)",
        name="terminal_has_time",
    ),
    Index(None, "org_id", "id"),
    Index(None, "org_id", "thread_id", "id"),
    Index(None, "org_id", "agent_id", "id"),
    # Lists filtered by end user (newest first); without it a rare user scans the org's runs.
    Index(None, "org_id", "user_id", "id"),
    # The claim scans pending runs oldest first; keep this index in step with its ORDER BY.
    Index("ix_runs_claim", "status", "id"),
    # The claim's per-thread ordering check looks up older runs of the same thread.
    Index("ix_runs_thread_order", "thread_id", "id"),
)

events = Table(
    "events",
    metadata,
    Column("run_id", String(40), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("type", String(40), nullable=False),
    Column("data", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("run_id", "seq"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("attempt", Integer, nullable=False),
    # pydantic-ai ModelMessagesTypeAdapter JSON: the conversation so far.
    Column("messages", Text, nullable=False),
    # How many of `messages` came from the thread's earlier runs (the rest are this run's own).
    Column("history_len", Integer, nullable=False, server_default="0"),
    Column("updated_at", UTCDateTime, nullable=False),
)

tool_calls = Table(
    "tool_calls",
    metadata,
    Column("run_id", String(40), nullable=False),
    Column("tool_call_id", String(200), nullable=False),
    Column("name", String(200), nullable=False),
    Column("args_hash", String(64), nullable=False),
    Column("result", Json),
    Column("is_error", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("run_id", "tool_call_id"),
)


waits = Table(
    "waits",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=False),
    Column("run_id", String(40), ForeignKey("runs.id"), nullable=False),
    Column("user_id", String(200)),
    Column("kind", String(16), nullable=False),
    # The deferred tool call this wait answers (null for a plan approval).
    Column("tool_call_id", String(200)),
    Column("request", Json, nullable=False),
    Column("answer_schema", Json, nullable=False),
    Column("status", String(16), nullable=False),
    Column("answer", Json),
    Column("resolved_by", String(200)),
    Column("created_at", UTCDateTime, nullable=False),
    Column("resolved_at", UTCDateTime),
    Column("expires_at", UTCDateTime),
    Column("timeout_action", String(8)),
    CheckConstraint(f"kind IN ({_sql_list(WAIT_KINDS)})", name="kind"),
    CheckConstraint(f"status IN ({_sql_list(WAIT_STATUSES)})", name="status"),
    Index(None, "run_id", "id"),
    Index(None, "org_id", "status", "id"),
)

memories = Table(
    "memories",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=False),
    Column("user_id", String(200), nullable=False),
    Column("text", Text, nullable=False),
    Column("metadata", Json, nullable=False),
    Column("run_id", String(40)),
    Column("created_at", UTCDateTime, nullable=False),
    Index(None, "org_id", "user_id", "id"),
)

files = Table(
    "files",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=False),
    # Null for an upload (`POST /v1/files`) not yet put into a thread's workspace.
    Column("thread_id", String(40)),
    # The run that created the file or changed it last.
    Column("run_id", String(40)),
    Column("path", String(1024), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("content_type", String(200), nullable=False),
    Column("sha256", String(64), nullable=False),
    # Where the content is: a `file_blobs` key (RUNYARD_FILES=db) or an object key under the S3 prefix.
    Column("blob_key", String(400), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    UniqueConstraint("thread_id", "path"),
    Index(None, "org_id", "thread_id", "id"),
)

run_files = Table(
    "run_files",
    metadata,
    # The files each run created or changed (a file keeps only its last writer).
    Column("run_id", String(40), nullable=False),
    Column("file_id", String(40), nullable=False),
    PrimaryKeyConstraint("run_id", "file_id"),
    Index(None, "file_id"),
)

file_blobs = Table(
    "file_blobs",
    metadata,
    # File content kept in the database (RUNYARD_FILES=db): content-addressed within a scope.
    Column("key", String(400), primary_key=True),
    Column("content", LargeBinary, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("org_id", String(40), nullable=False),
    Column("key", String(255), nullable=False),
    Column("body_hash", String(64), nullable=False),
    Column("run_id", String(40), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("org_id", "key"),
    Index(None, "created_at"),  # the retention purge finds expired keys by age
)

webhooks = Table(
    "webhooks",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=False),
    Column("url", String(2048), nullable=False),
    # Subscriptions: event types, `run.*`-style prefixes, or `*`.
    Column("events", Json, nullable=False),
    Column("description", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("secret", String(100), nullable=False),
    # After a rotation the old secret signs too, until `previous_secret_until`.
    Column("previous_secret", String(100)),
    Column("previous_secret_until", UTCDateTime),
    # The first failed delivery since the last success: past `webhooks_disable_after`, disabled.
    Column("failing_since", UTCDateTime),
    Column("disabled_reason", Text),
    Column("metadata", Json, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index(None, "org_id", "id"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    # The `webhook-id` header: the same on every attempt, so receivers can drop duplicates.
    Column("id", String(40), primary_key=True),
    Column("org_id", String(40), ForeignKey("orgs.id"), nullable=False),
    # Null for a run's own `webhook_url` (signed with the org's default secret).
    Column("webhook_id", String(40)),
    Column("url", String(2048), nullable=False),
    Column("run_id", String(40)),
    Column("event_type", String(40), nullable=False),
    # The body as sent, JSON text: byte for byte the same on every attempt.
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),
    # Leased like runs (`store.queue`): attempts so far, who holds it, until when (database clock).
    Column("attempt", Integer, nullable=False),
    Column("worker_id", String(80)),
    Column("lease_until", Float),
    # Epoch seconds on the database clock at which the next attempt may start.
    Column("available_at", Float, nullable=False),
    Column("response_status", Integer),
    Column("response_body", Text),
    Column("latency_ms", Float),
    Column("error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime),
    CheckConstraint(f"status IN ({_sql_list(DELIVERY_STATUSES)})", name="status"),
    # The claim scans due pending deliveries; keep this index in step with its ORDER BY.
    Index("ix_webhook_deliveries_claim", "status", "available_at"),
    Index(None, "webhook_id", "id"),
    Index(None, "org_id", "id"),
)

rate_limits = Table(
    "rate_limits",
    metadata,
    # One token bucket per API key, shared by every API node (PostgreSQL; SQLite keeps them in process).
    Column("key_id", String(40), primary_key=True),
    Column("tokens", Float, nullable=False),
    # Epoch seconds on the database clock of the last refill.
    Column("refilled_at", Float, nullable=False),
)
