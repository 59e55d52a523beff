"""Cache service settings (environment variables prefixed ``CACHE_``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_settings import SettingsConfigDict

from murmur_core.settings import ServiceSettings


class ClassPolicy(BaseModel):
    """Freshness of one data class: how long a copy is fresh, how long after that
    it may still be served while one caller refreshes it (stale-while-revalidate),
    and how long while the source of truth is failing (stale-if-error)."""

    model_config = ConfigDict(frozen=True)

    ttl_seconds: float
    stale_while_revalidate_seconds: float = 0.0
    stale_if_error_seconds: float = 0.0

    @property
    def retention_seconds(self) -> float:
        """How long Redis keeps a copy: fresh plus the longer stale window."""
        return self.ttl_seconds + max(
            self.stale_while_revalidate_seconds, self.stale_if_error_seconds
        )


class CacheSettings(ServiceSettings):
    model_config = SettingsConfigDict(
        env_prefix="CACHE_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    grpc_host: str = "0.0.0.0"
    grpc_port: int = 7052
    metrics_port: int = 9465
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_timeout_seconds: float = 0.5
    timeline_addr: str = "127.0.0.1:7051"
    timeline_timeout_seconds: float = 2.0
    # Empty: no event-driven invalidation and no L1 (nothing could keep it true).
    nats_url: str = "nats://127.0.0.1:4222"

    # "1:<base64 32 bytes>,2:<...>": AES-256-GCM keys by version; the highest
    # seals, all open. The hash secret keys Redis key names (never rotate it
    # without a flush). Both are required; `make up` generates dev values.
    sealing_keys: str = Field(default="", repr=False)
    key_hash_secret: str = Field(default="", repr=False)

    l1_max_entries: int = 100_000
    l1_max_bytes: int = 256 * 1024 * 1024
    # Feeds change by appends that are not broadcast, so L1 keeps feed ids only
    # briefly; post entries are immutable and invalidated by broadcast.
    l1_feed_ttl_seconds: float = 2.0

    post: ClassPolicy = ClassPolicy(ttl_seconds=24 * 3600, stale_if_error_seconds=0)
    home_feed: ClassPolicy = ClassPolicy(
        ttl_seconds=3600, stale_while_revalidate_seconds=60, stale_if_error_seconds=3600
    )
    # User timelines are kept true by events (appends, tombstones) like home
    # feeds, so they may live as long.
    user_timeline: ClassPolicy = ClassPolicy(
        ttl_seconds=3600, stale_while_revalidate_seconds=60, stale_if_error_seconds=3600
    )
    relation: ClassPolicy = ClassPolicy(ttl_seconds=3600)
    # Activity records (who read recently): for warming and the fan-out pipeline.
    activity_retention_seconds: float = 30 * 24 * 3600
    # Readers inactive past the retention lose their record and cached feed,
    # checked this often (by one instance), this many per Redis round trip.
    forget_inactive_every_seconds: float = Field(default=3600.0, gt=0)
    forget_inactive_batch: int = Field(default=1000, ge=1)
    ttl_jitter: float = Field(default=0.1, ge=0.0, le=0.5)

    feed_cap: int = 800
    # Posts fetched from the timeline service when a feed is rebuilt.
    rebuild_size: int = 100
    # Ids of a feed held in L1: pages deeper than this read Redis directly.
    l1_feed_window: int = 200
    max_page_size: int = 100
    max_batch: int = 10_000
    # One post entry: the timeline's ciphertext limit plus metadata.
    max_entry_bytes: int = 96 * 1024

    lease_ttl_seconds: float = 3.0
    lease_wait_seconds: float = 1.5
    lease_poll_seconds: float = 0.02
    # XFetch: larger refreshes hot keys earlier before they expire.
    early_refresh_beta: float = 1.0

    warm_on_start: int = 100
    warm_concurrency: int = 8

    invalidation_consumer: str = "cache-invalidation"
    invalidation_batch: int = 256

    @field_validator("post", "home_feed", "user_timeline", "relation", mode="before")
    @classmethod
    def _keep_unset_policy_fields(cls, value: Any, info: ValidationInfo) -> Any:
        # CACHE_HOME_FEED__TTL_SECONDS alone must not zero the stale windows:
        # fields not given keep this class's defaults, not ClassPolicy's.
        if isinstance(value, dict) and info.field_name is not None:
            default = cls.model_fields[info.field_name].default
            if isinstance(default, ClassPolicy):
                return {**default.model_dump(), **value}
        return value
