"""Gateway settings (environment variables prefixed ``GATEWAY_``)."""

from __future__ import annotations

import time

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from murmur_core.settings import TokenVerifyingSettings


class GatewaySettings(TokenVerifyingSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    timeline_addr: str = "127.0.0.1:7051"
    grpc_timeout_seconds: float = Field(default=2.0, gt=0)
    # Readiness probes must answer before the prober gives up, so they get a
    # deadline of their own, shorter than a request's.
    ready_timeout_seconds: float = Field(default=0.5, gt=0)
    # The cache service: hot reads go through it; empty runs without it.
    cache_addr: str = "127.0.0.1:7052"
    # Longer than a rebuild from the timeline can take, shorter than a request's.
    cache_timeout_seconds: float = Field(default=1.5, gt=0)
    # NATS, for the cache's invalidation broadcasts; without it no near cache.
    nats_url: str = "nats://127.0.0.1:4222"
    near_cache_max_entries: int = Field(default=20_000, ge=1)
    near_cache_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # Feeds also change by fan-out appends, which are not broadcast: this bounds
    # how late a new post may show in a page served from the near cache.
    near_cache_ttl_seconds: float = Field(default=1.0, ge=0)
    # A token seen after this long a silence starts a session: the cache warms
    # that user's first home page.
    session_quiet_seconds: float = Field(default=900.0, gt=0)
    # Above the timeline's ciphertext limit once base64 and the JSON around it
    # are counted, so a legal post always fits.
    max_body_bytes: int = Field(default=131072, gt=0)
    max_page_size: int = Field(default=100, ge=1)
    default_page_size: int = Field(default=20, ge=1)
    # Cursors are short opaque tokens; anything longer is not one.
    max_cursor_length: int = Field(default=512, ge=1)
    # Signs page cursors and sync tokens. Every gateway behind one balancer
    # needs the same secret; unset, each process draws its own at start-up.
    cursor_secret: SecretStr | None = None
    # Redis for idempotency records and rate-limit buckets; empty disables both.
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Idempotency-Key records live this long (published in the API docs); a
    # request still running after lock_seconds no longer blocks its retries.
    idempotency_ttl_seconds: float = Field(default=86_400.0, gt=0)
    idempotency_lock_seconds: float = Field(default=30.0, gt=0)
    # Sustained requests per second and burst, per user and per client
    # address; a rate of 0 turns that limit off.
    rate_limit_user_per_second: float = Field(default=20.0, ge=0)
    rate_limit_user_burst: int = Field(default=100, ge=1)
    rate_limit_address_per_second: float = Field(default=50.0, ge=0)
    rate_limit_address_burst: int = Field(default=300, ge=1)
    # Proxies in front of the gateway that append to X-Forwarded-For (Varnish,
    # a load balancer): the client address is that many entries from the right.
    trusted_proxy_hops: int = Field(default=0, ge=0)
    # GET /v1/sync: changes per answer, and the longest long-poll.
    sync_default_changes: int = Field(default=100, ge=1)
    sync_max_changes: int = Field(default=500, ge=1)
    sync_max_wait_seconds: float = Field(default=30.0, ge=0)
    # Answer first home pages the near cache holds before FastAPI routes
    # them (see hot_path.py); off, every request takes the routed path.
    hot_path: bool = True
    # Comma-separated origins of web apps allowed to call the API from a
    # browser (CORS); empty allows none. Phones need no entry.
    cors_origins: str = ""
    # Lists inline ciphertext up to this size and link to /v1/blobs above it.
    blob_inline_limit: int = Field(default=2048, ge=0)
    # Shared caches (CDN, Varnish) keep public responses this long, then serve
    # them stale while revalidating, or while the gateway is failing.
    cdn_max_age_seconds: int = Field(default=30, ge=0)
    cdn_s_maxage_seconds: int = Field(default=300, ge=0)
    cdn_stale_while_revalidate_seconds: int = Field(default=30, ge=0)
    cdn_stale_if_error_seconds: int = Field(default=86_400, ge=0)
    # Comma-separated Varnish base URLs that writes purge by surrogate key.
    cdn_purge_urls: str = ""
    cdn_purge_timeout_seconds: float = Field(default=1.0, gt=0)

    @property
    def cors_origin_list(self) -> list[str]:
        return [o.strip() for o in self.cors_origins.split(",") if o.strip()]

    @property
    def cdn_purge_url_list(self) -> list[str]:
        return [u.strip() for u in self.cdn_purge_urls.split(",") if u.strip()]

    def public_cache_control(self, until: float | None = None) -> str:
        """For shared caches. A response holding a post that expires at
        ``until`` (Unix seconds) may be kept, stale or not, only until then."""
        max_age, s_maxage = self.cdn_max_age_seconds, self.cdn_s_maxage_seconds
        swr, sie = self.cdn_stale_while_revalidate_seconds, self.cdn_stale_if_error_seconds
        if until is not None:
            left = max(0, int(until - time.time()))
            max_age, s_maxage = min(max_age, left), min(s_maxage, left)
            swr, sie = min(swr, left - s_maxage), min(sie, left - s_maxage)
        return (
            f"public, max-age={max_age}, s-maxage={s_maxage}, "
            f"stale-while-revalidate={swr}, stale-if-error={sie}"
        )

    @model_validator(mode="after")
    def _default_page_fits(self) -> GatewaySettings:
        if self.default_page_size > self.max_page_size:
            raise ValueError("default_page_size must not exceed max_page_size")
        return self
