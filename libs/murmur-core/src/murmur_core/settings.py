"""Settings: every service reads its configuration from the environment, under
its own prefix (``TIMELINE_``, ``GATEWAY_``, ...), through one base class."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from murmur_core.auth import TokenVerifier


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
    # Bearer token of the operators' debug endpoints beside /metrics
    # (/debug/profile, /debug/queries; murmur_core.admin). Unset or empty,
    # they answer 404.
    admin_token: SecretStr | None = None
    # How long a stopping server keeps answering NOT_SERVING before it closes,
    # so load balancers and clients move away first.
    shutdown_drain_seconds: float = 0.5
    shutdown_grace_seconds: float = 5.0


class TokenVerifyingSettings(ServiceSettings):
    """Fields of a service that authenticates clients by their Ed25519 JWTs."""

    # Comma-separated so keys can rotate: add the new public key, switch the
    # signer, then drop the old key once its tokens have expired.
    jwt_public_key_files: str = "var/dev-keys/jwt-ed25519.pub"
    jwt_issuer: str = "murmur-dev"
    jwt_audience: str = "murmur"

    @property
    def jwt_public_key_paths(self) -> list[Path]:
        return [Path(p.strip()) for p in self.jwt_public_key_files.split(",") if p.strip()]

    def token_verifier(self) -> TokenVerifier:
        """Loads the keys now, so a missing or bad key stops start-up."""
        return TokenVerifier.from_files(
            self.jwt_public_key_paths, issuer=self.jwt_issuer, audience=self.jwt_audience
        )
