"""Metrics service settings (environment variables prefixed ``METRICS_``)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from murmur_core.settings import TokenVerifyingSettings


def _named_urls(value: str) -> list[tuple[str, str]]:
    """``name=url,name=url`` -> [(name, url)]; a name may repeat (instances)."""
    pairs: list[tuple[str, str]] = []
    for item in value.split(","):
        name, sep, url = item.strip().partition("=")
        if not item.strip():
            continue
        if not sep or not name.strip() or not url.strip():
            raise ValueError(f"expected name=url, got {item.strip()!r}")
        pairs.append((name.strip(), url.strip()))
    return pairs


class MetricsSettings(TokenVerifyingSettings):
    model_config = SettingsConfigDict(env_prefix="METRICS_", extra="ignore", frozen=True)

    host: str = "0.0.0.0"
    port: int = Field(default=8095, ge=0, le=65535)
    redis_url: str = "redis://127.0.0.1:6379/0"
    nats_url: str = "nats://127.0.0.1:4222"
    # Unset (the embedded default): performance comes from the services'
    # own /metrics, scraped here. Set: from Prometheus's HTTP API.
    prometheus_url: str = Field(
        default="", validation_alias=AliasChoices("METRICS_PROMETHEUS_URL", "PROMETHEUS_URL")
    )
    alertmanager_url: str = Field(
        default="", validation_alias=AliasChoices("METRICS_ALERTMANAGER_URL", "ALERTMANAGER_URL")
    )
    # name=http://host:port/metrics, one per service instance scraped when
    # Prometheus is absent (and read for versions, uptime and resources).
    scrape_targets: str = ""
    # name=grpc://host:port (gRPC health) or name=http://host:port/readyz.
    health_targets: str = ""
    scrape_interval_seconds: float = Field(default=5.0, gt=0)
    # Scrapes kept per target: the dashboard's history (default 30 min).
    history_points: int = Field(default=360, ge=2)
    # Rates and percentiles are computed over this window.
    rate_window_seconds: float = Field(default=60.0, gt=0)
    # The live dashboard stream sends a snapshot this often.
    stream_interval_seconds: float = Field(default=2.0, gt=0)
    # Shared with every service: authorises the metrics service's calls to
    # their /debug endpoints (CPU profiles, query statistics).
    admin_token: SecretStr | None = None
    # Profiles an operator may ask for: at most this long.
    profile_max_seconds: float = Field(default=30.0, gt=0)

    # Analytics: event ids are remembered this long to make replays
    # idempotent; it must exceed the MURMUR_EVENTS stream's retention.
    dedupe_retention_seconds: float = Field(default=8 * 86400.0, gt=0)
    # Keys are namespaced, so several deployments can share one Redis.
    redis_key_prefix: str = "murmur:analytics"
    # Secret for the keyed hash that stands in for user ids in analytics keys.
    user_hash_secret: SecretStr = SecretStr("dev-only-analytics-secret")

    @property
    def scrape_target_urls(self) -> list[tuple[str, str]]:
        return _named_urls(self.scrape_targets)

    @property
    def health_target_urls(self) -> list[tuple[str, str]]:
        return _named_urls(self.health_targets)
