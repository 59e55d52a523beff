"""The development signing key pair, and tokens signed with it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from murmur_core.auth import ensure_dev_keypair, load_private_key, mint_token

KEY_FILE = "jwt-ed25519.key"


@dataclass(frozen=True)
class DevKeys:
    private: Path
    public: Path

    @classmethod
    def ensure(cls, directory: Path) -> DevKeys:
        """The pair in ``directory``, created on first use."""
        private = directory / KEY_FILE
        keys = cls(private=private, public=private.with_suffix(".pub"))
        ensure_dev_keypair(keys.private, keys.public)
        return keys

    def token(self, user_id: str, ttl_seconds: float = 3600.0, roles: tuple[str, ...] = ()) -> str:
        return mint_token(
            load_private_key(self.private), user_id, ttl_seconds=ttl_seconds, roles=roles
        )
