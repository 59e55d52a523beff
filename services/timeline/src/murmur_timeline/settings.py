"""Timeline service settings (environment variables prefixed ``TIMELINE_``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from murmur_core.settings import ServiceSettings


class TimelineSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TIMELINE_", extra="ignore", frozen=True)

    grpc_host: str = "0.0.0.0"
    grpc_port: int = 7051
    metrics_port: int = 9464
    # sqlite:///relative/or/absolute/path.db or postgresql://user@host:port/db
    database_url: str = "sqlite:///var/murmur/timeline.db"
    database_pool_size: int = 10
    # Statements at least this long are logged and counted as slow
    # (murmur_db_slow_queries_total, /debug/queries).
    slow_query_seconds: float = Field(default=0.05, gt=0)
    # Empty disables the outbox relay (rows wait in the outbox until it runs).
    nats_url: str = "nats://127.0.0.1:4222"
    events_retention_seconds: float = 7 * 24 * 3600
    outbox_batch_size: int = 256
    outbox_poll_seconds: float = 0.5

    max_ciphertext_bytes: int = 64 * 1024
    max_key_id_length: int = 128
    max_handle_length: int = 32
    max_public_key_bytes: int = 1024
    max_page_size: int = 100
    default_page_size: int = 20
    max_batch_size: int = 1000
    # First home pages list the viewer's followees up to this many (for caches).
    max_followees_in_page: int = 2000
    # A post id embeds its creation time: ids ahead of our clock would pin a post
    # above all others; ids far behind it come only from long-offline clients.
    post_id_max_ahead_seconds: float = 300.0
    post_id_max_behind_seconds: float = 7 * 24 * 3600
