"""Settings: every service reads its configuration from the environment, under
its own prefix (``TIMELINE_``, ``GATEWAY_``, ...), through one base class."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Fields every service has. Subclasses set ``env_prefix`` in ``model_config``.

    OpenTelemetry is configured by the standard ``OTEL_*`` variables, read by the
    SDK itself, so they carry no prefix.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    log_level: str = "INFO"
    # Port of the Prometheus /metrics listener for services that do not speak
    # HTTP themselves; 0 picks nothing and disables it.
    metrics_port: int = 0
    # How long a stopping server keeps answering NOT_SERVING before it closes,
    # so load balancers and clients move away first.
    shutdown_drain_seconds: float = 0.5
    shutdown_grace_seconds: float = 5.0
