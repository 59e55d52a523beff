"""TokenVerifier keeps tokens it verified, until each one's own expiry."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from murmur_core.auth import InvalidToken, TokenVerifier, mint_token


def test_a_cached_token_still_expires_on_time() -> None:
    key = Ed25519PrivateKey.generate()
    verifier = TokenVerifier([key.public_key()], leeway_seconds=0)
    # Issued so that it expires about 1.2 s from now.
    token = mint_token(key, "alice", ttl_seconds=60, now=time.time() - 58.8)
    first = verifier.verify(token)
    assert verifier.verify(token) is first  # served from the cache
    time.sleep(1.5)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)
    with pytest.raises(InvalidToken, match="expired"):
        verifier.verify(token)  # and again, now from the signature check


def test_only_verified_tokens_are_kept_and_the_cache_is_bounded() -> None:
    key = Ed25519PrivateKey.generate()
    verifier = TokenVerifier([key.public_key()], cache_size=3)
    stranger = mint_token(Ed25519PrivateKey.generate(), "mallory")
    for _ in range(2):
        with pytest.raises(InvalidToken):
            verifier.verify(stranger)
    tokens = [mint_token(key, f"user{n}") for n in range(5)]
    principals = [verifier.verify(t) for t in tokens]
    assert [p.user_id for p in principals] == [f"user{n}" for n in range(5)]
    assert len(verifier._verified) == 3
    assert stranger not in verifier._verified
