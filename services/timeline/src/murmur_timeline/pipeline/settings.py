"""Pipeline settings (environment variables prefixed ``PIPELINE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from murmur_core.settings import ServiceSettings


class PipelineSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="PIPELINE_", extra="ignore", frozen=True)

    # Health (gRPC) and metrics listeners of this process.
    grpc_host: str = "0.0.0.0"
    grpc_port: int = 7053
    metrics_port: int = 9466
    # The timeline's database: followers are read from the source of truth.
    database_url: str = "sqlite:///var/murmur/timeline.db"
    database_pool_size: int = 5
    # Statements at least this long are logged and counted as slow
    # (murmur_db_slow_queries_total, /debug/queries).
    slow_query_seconds: float = Field(default=0.05, gt=0)
    nats_url: str = "nats://127.0.0.1:4222"
    cache_addr: str = "127.0.0.1:7052"
    cache_timeout_seconds: float = 5.0

    consumer: str = "pipeline"
    fetch_batch: int = Field(default=256, ge=1)
    fetch_wait_seconds: float = Field(default=0.5, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    # How long a fetched, unacknowledged event waits before another instance
    # gets it: the latency a crashed instance costs its batch in hand.
    ack_wait_seconds: float = Field(default=10.0, gt=0)
    # Events of one fetched batch applied at once (an author's own events, and
    # a follower's, still in stream order). The posts among them are fanned
    # out together, in one round of queries, cache calls and acks, so this is
    # the fetch batch: a smaller value splits a batch into several rounds.
    concurrency: int = Field(default=256, ge=1)
    # Fetched batches applied at once: the next batch's queries and cache
    # calls overlap the last one's wait for JetStream to store its per-user
    # events (an author's or follower's events still in stream order).
    batches_in_flight: int = Field(default=2, ge=1)

    # Readers who have not read or connected for this long get no fan-out;
    # their feed is rebuilt from SQL when they return.
    active_days: float = Field(default=14.0, gt=0)
    # Authors with more followers than this are not fanned out: their recent
    # posts are merged into readers' pages when read (see docs/pipeline.md).
    hybrid_threshold: int = Field(default=10_000, ge=0)
    # Followers of a large author read from SQL per query.
    fanout_page: int = Field(default=5_000, ge=1)
    # A new follow merges this many of the followee's recent posts into the feed.
    follow_merge_posts: int = Field(default=50, ge=0, le=100)
    # Per-user events are kept this long for notifier resume.
    user_events_retention_seconds: float = 24 * 3600

    expire_every_seconds: float = Field(default=5.0, gt=0)
    prune_outbox_every_seconds: float = Field(default=60.0, gt=0)
    # Sent outbox rows are kept this long (for inspection and late re-publishes).
    outbox_keep_seconds: float = Field(default=3600.0, ge=0)
    cleanup_batch: int = Field(default=500, ge=1)
