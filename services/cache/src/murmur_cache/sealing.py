"""Sealing of everything the cache writes to Redis, and keyed hashes of key names.

A sealed value is ``version (2 bytes, big-endian) | nonce (12 bytes) | AES-256-GCM
ciphertext and tag``. The Redis key the value lives under is the associated data,
so a value copied under another key fails to open. Redis key names are keyed
hashes so that a Redis dump reveals neither user ids nor post ids.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
from collections.abc import Mapping, Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
MIN_HASH_SECRET_BYTES = 32
MAX_VERSION = 0xFFFF
_VERSION_BYTES = 2
_NONCE_BYTES = 12
_TAG_BYTES = 16
_HEADER_BYTES = _VERSION_BYTES + _NONCE_BYTES
_HASH_CHARS = 22  # 132 bits: collisions stay out of reach at any realistic key count


class SealError(Exception):
    """A value that cannot be opened: unknown key version, tampered, bound to
    another key, or malformed."""


class KeyRing:
    """AES-256-GCM keys by version: the newest seals, every one in the ring opens."""

    __slots__ = ("_aeads", "_current", "_current_aead", "_current_prefix", "_hash_secret")

    def __init__(self, keys: Mapping[int, bytes], hash_secret: bytes) -> None:
        if not keys:
            raise ValueError("the key ring needs at least one sealing key")
        for version, key in keys.items():
            _check_version(version)
            if len(key) != KEY_BYTES:
                raise ValueError(
                    f"sealing key version {version} must be {KEY_BYTES} bytes, got {len(key)}"
                )
        if len(hash_secret) < MIN_HASH_SECRET_BYTES:
            raise ValueError(
                f"the key hash secret must be at least {MIN_HASH_SECRET_BYTES} bytes,"
                f" got {len(hash_secret)}"
            )
        # Built once: key schedule set-up would otherwise be paid on every value.
        self._aeads = {version: AESGCM(bytes(key)) for version, key in keys.items()}
        self._current = max(keys)
        self._current_aead = self._aeads[self._current]
        self._current_prefix = self._current.to_bytes(_VERSION_BYTES, "big")
        self._hash_secret = bytes(hash_secret)

    @classmethod
    def parse(cls, keys_setting: str, hash_secret_setting: str) -> KeyRing:
        """Build a ring from ``"1:<base64>,2:<base64>"`` and a base64 hash secret.

        Errors name an entry by position, never by its text: the text is a secret.
        """
        keys: dict[int, bytes] = {}
        entries = keys_setting.split(",") if keys_setting.strip() else []
        if not entries:
            raise ValueError("no sealing keys configured (expected '1:<base64 32 bytes>,...')")
        for position, entry in enumerate(entries, start=1):
            version_text, colon, key_text = entry.strip().partition(":")
            if not colon:
                raise ValueError(f"sealing key entry {position} is not '<version>:<base64 key>'")
            try:
                version = int(version_text)
            except ValueError:
                raise ValueError(
                    f"sealing key entry {position}: the version is not an integer"
                ) from None
            _check_version(version)
            if version in keys:
                raise ValueError(f"sealing key version {version} appears more than once")
            keys[version] = _decode(key_text, f"sealing key version {version}")
        return cls(keys, _decode(hash_secret_setting, "the key hash secret"))

    @staticmethod
    def generate_setting(version: int = 1) -> str:
        """A fresh ``"<version>:<base64 key>"`` entry, for dev set-ups."""
        _check_version(version)
        return f"{version}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"

    def __repr__(self) -> str:
        return f"KeyRing(versions={sorted(self._aeads)})"

    @property
    def current_version(self) -> int:
        return self._current

    def seal(self, plaintext: bytes, *, bound_to: bytes) -> bytes:
        # Random 96-bit nonces: NIST SP 800-38D caps one key at 2**32 seals, so
        # the key must be rotated well before that many writes.
        nonce = secrets.token_bytes(_NONCE_BYTES)
        return self._current_prefix + nonce + self._current_aead.encrypt(nonce, plaintext, bound_to)

    def open(self, sealed: bytes, *, bound_to: bytes) -> bytes:
        if len(sealed) < _HEADER_BYTES + _TAG_BYTES:
            raise SealError("sealed value is too short")
        version = int.from_bytes(sealed[:_VERSION_BYTES], "big")
        aead = self._aeads.get(version)
        if aead is None:
            raise SealError(f"sealed with key version {version}, which is not in the ring")
        try:
            return aead.decrypt(
                sealed[_VERSION_BYTES:_HEADER_BYTES], sealed[_HEADER_BYTES:], bound_to
            )
        except InvalidTag:
            raise SealError("sealed value is tampered or bound to another key") from None

    def seal_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        """Seal ``(plaintext, bound_to)`` pairs, in order."""
        return [self.seal(plaintext, bound_to=bound_to) for plaintext, bound_to in items]

    def open_many(self, items: Sequence[tuple[bytes, bytes]]) -> list[bytes | None]:
        """Open ``(sealed, bound_to)`` pairs; ``None`` where one fails, so one bad
        value costs a miss for that entry rather than the whole page."""
        opened: list[bytes | None] = []
        for sealed, bound_to in items:
            try:
                opened.append(self.open(sealed, bound_to=bound_to))
            except SealError:
                opened.append(None)
        return opened

    def hashed(self, namespace: str, value: str) -> str:
        """Keyed hash of ``value`` for use in a Redis key name under ``namespace``."""
        if "\x00" in namespace:
            # The separator must be unambiguous, or ("a\0b", "c") would equal ("a", "b\0c").
            raise ValueError("a hash namespace cannot contain NUL")
        message = f"{namespace}\x00{value}".encode()
        digest = hmac.digest(self._hash_secret, message, "sha256")
        return base64.urlsafe_b64encode(digest)[:_HASH_CHARS].decode()


def _check_version(version: int) -> None:
    if not 1 <= version <= MAX_VERSION:
        raise ValueError(f"sealing key versions must be in 1..{MAX_VERSION}, got {version}")


def _decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        # `from None`: the decoder's own message could quote the secret text.
        raise ValueError(f"{what} is not valid base64") from None
