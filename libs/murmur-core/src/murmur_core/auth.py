"""Bearer tokens: JWTs signed with Ed25519 (``alg: EdDSA``), verified against a
set of configured public keys so keys can rotate by adding one first.

The ``kid`` of a key is its RFC 7638 JWK thumbprint, so a key file needs no
separate name and a token names exactly the key that signed it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

# User ids are opaque to Murmur; this bounds them for subjects, keys and URLs.
# Match with fullmatch: with match, "$" also accepts a trailing newline.
USER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
DEFAULT_ISSUER = "murmur-dev"
DEFAULT_AUDIENCE = "murmur"
VERIFIED_CACHE_SIZE = 50_000
OPERATOR_ROLE = "operator"


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why without echoing it."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    expires_at: float
    # From the token's "roles" claim; "operator" opens operators' views
    # (the metrics dashboard's user-level analytics and profiles).
    roles: frozenset[str] = frozenset()

    @property
    def is_operator(self) -> bool:
        return OPERATOR_ROLE in self.roles


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    jwk = {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}
    canonical = json.dumps(jwk, separators=(",", ":"), sort_keys=True).encode()
    return _b64url(hashlib.sha256(canonical).digest())


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_public_key(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(path.read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path} does not hold an Ed25519 public key")
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path} does not hold an Ed25519 private key")
    return key


class TokenVerifier:
    def __init__(
        self,
        public_keys: list[Ed25519PublicKey],
        *,
        issuer: str = DEFAULT_ISSUER,
        audience: str = DEFAULT_AUDIENCE,
        leeway_seconds: float = 30.0,
        cache_size: int = VERIFIED_CACHE_SIZE,
    ) -> None:
        if not public_keys:
            raise ValueError("at least one public key is needed to verify tokens")
        self._keys = {key_id(k): k for k in public_keys}
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_seconds
        # A client sends the same token on every request until it expires;
        # checking the signature once per token, not per request, saves about
        # 230 us of CPU a request. Only verified tokens are kept, each until
        # its own expiry, and at most cache_size of them.
        self._verified: OrderedDict[str, Principal] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def from_files(cls, paths: list[Path], **options: str | float) -> TokenVerifier:
        return cls([load_public_key(p) for p in paths], **options)  # type: ignore[arg-type]

    def verify(self, token: str) -> Principal:
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known.expires_at + self._leeway:
                return known
            del self._verified[token]
            raise InvalidToken("token expired")
        principal = self._verify_signed(token)
        self._verified[token] = principal
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return principal

    def _verify_signed(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("malformed token") from exc
        if header.get("alg") != "EdDSA":
            raise InvalidToken("token must be signed with EdDSA")
        kid = header.get("kid")
        candidates = [self._keys[kid]] if kid in self._keys else []
        if kid is None:
            candidates = list(self._keys.values())
        if not candidates:
            raise InvalidToken("token signed by an unknown key")
        last: jwt.PyJWTError | None = None
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key=key,
                    algorithms=["EdDSA"],
                    audience=self._audience,
                    issuer=self._issuer,
                    leeway=self._leeway,
                    options={"require": ["sub", "exp", "iat"]},
                )
            except jwt.ExpiredSignatureError as exc:
                raise InvalidToken("token expired") from exc
            except jwt.PyJWTError as exc:
                last = exc
                continue
            subject = claims["sub"]
            if not isinstance(subject, str) or not USER_ID_PATTERN.fullmatch(subject):
                raise InvalidToken("token subject is not a valid user id")
            roles = claims.get("roles", [])
            if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
                raise InvalidToken("token roles must be a list of names")
            return Principal(
                user_id=subject, expires_at=float(claims["exp"]), roles=frozenset(roles)
            )
        raise InvalidToken(_reason(last))


def _reason(exc: jwt.PyJWTError | None) -> str:
    if isinstance(exc, jwt.InvalidAudienceError):
        return "token is for another audience"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "token has an unknown issuer"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return "token lacks a required claim"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "token not valid yet"
    return "token signature or claims are invalid"


def mint_token(
    private_key: Ed25519PrivateKey,
    user_id: str,
    *,
    ttl_seconds: float = 3600.0,
    issuer: str = DEFAULT_ISSUER,
    audience: str = DEFAULT_AUDIENCE,
    now: float | None = None,
    roles: tuple[str, ...] = (),
) -> str:
    if not USER_ID_PATTERN.fullmatch(user_id):
        raise ValueError("user id must match [A-Za-z0-9_-]{1,64}")
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "sub": user_id,
        "iss": issuer,
        "aud": audience,
        "iat": issued,
        "exp": issued + int(ttl_seconds),
    }
    if roles:
        claims["roles"] = list(roles)
    return jwt.encode(
        claims,
        private_key,
        algorithm="EdDSA",
        headers={"kid": key_id(private_key.public_key())},
    )


def ensure_dev_keypair(private_path: Path, public_path: Path) -> None:
    """Create the local development signing key on first use (never in production)."""
    if private_path.exists() and public_path.exists():
        return
    private_path.parent.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    private_path.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    private_path.chmod(0o600)
    public_path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
