"""Gateway settings (environment variables prefixed ``GATEWAY_``)."""

from __future__ import annotations

from pydantic import Field, model_validator
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

    @model_validator(mode="after")
    def _default_page_fits(self) -> GatewaySettings:
        if self.default_page_size > self.max_page_size:
            raise ValueError("default_page_size must not exceed max_page_size")
        return self
