"""Bearer-token authentication and rate limits: every /v1 route runs as the
token's subject, or, where public content allows it, as an anonymous reader;
either way it is charged to its buckets first."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from murmur_core.auth import InvalidToken, Principal, TokenVerifier
from murmur_core.problems import ProblemError
from murmur_gateway.ratelimit import Limit, RateLimiter
from murmur_gateway.reads import ANONYMOUS_VIEWER
from murmur_gateway.settings import GatewaySettings

# auto_error is off so that every refusal is our problem document with the
# RFC 6750 challenge, not FastAPI's default body.
_bearer = HTTPBearer(auto_error=False, bearerFormat="JWT")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def get_verifier(request: Request) -> TokenVerifier:
    verifier: TokenVerifier = request.app.state.verifier
    return verifier


def _unauthorized(detail: str, *, token_given: bool) -> ProblemError:
    challenge = 'Bearer error="invalid_token"' if token_given else "Bearer"
    return ProblemError(
        401,
        "unauthorized",
        "Unauthorized",
        detail,
        headers={"WWW-Authenticate": challenge},
    )


def client_address(request: Request, trusted_hops: int) -> str:
    if trusted_hops:
        hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",")]
        if len(hops) >= trusted_hops and hops[-trusted_hops]:
            return hops[-trusted_hops]
    return request.client.host if request.client else "unknown"


async def charge(request: Request, user_id: str | None) -> None:
    settings: GatewaySettings = request.app.state.settings
    limiter: RateLimiter = request.app.state.limiter
    limits = []
    if user_id is not None and settings.rate_limit_user_per_second > 0:
        limits.append(
            Limit(
                "user",
                f"u:{user_id}",
                settings.rate_limit_user_per_second,
                settings.rate_limit_user_burst,
            )
        )
    if settings.rate_limit_address_per_second > 0:
        address = client_address(request, settings.trusted_proxy_hops)
        limits.append(
            Limit(
                "address",
                f"a:{address}",
                settings.rate_limit_address_per_second,
                settings.rate_limit_address_burst,
            )
        )
    verdict = await limiter.check(limits)
    if not verdict.allowed:
        raise ProblemError(
            429,
            "too-many-requests",
            "Too many requests",
            f"the {verdict.refused_by} rate limit is exhausted; retry after "
            f"{verdict.retry_after_seconds} s",
            headers={"Retry-After": str(verdict.retry_after_seconds)},
        )


def verify_token(verifier: TokenVerifier, token: str) -> Principal:
    try:
        principal = verifier.verify(token)
    except InvalidToken as exc:
        # The reason names what is wrong without quoting the token.
        raise _unauthorized(str(exc), token_given=True) from None
    if principal.user_id == ANONYMOUS_VIEWER:
        raise _unauthorized("the token's subject is reserved", token_given=True)
    return principal


async def authenticate(
    request: Request,
    credentials: Credentials,
    verifier: Annotated[TokenVerifier, Depends(get_verifier)],
) -> Principal:
    if credentials is None:
        await charge(request, None)
        raise _unauthorized("a bearer token is required", token_given=False)
    try:
        principal = verify_token(verifier, credentials.credentials)
    except ProblemError:
        await charge(request, None)
        raise
    await charge(request, principal.user_id)
    sync = getattr(request.app.state, "cache_sync", None)
    if sync is not None:
        sync.seen(principal.user_id)
    return principal


async def authenticate_if_given(
    request: Request,
    credentials: Credentials,
    verifier: Annotated[TokenVerifier, Depends(get_verifier)],
) -> Principal | None:
    """The token's subject, or None for an anonymous reader of public content.
    A token that is given must be valid: a client with an expired token is
    told so rather than silently shown the public view."""
    if credentials is None:
        await charge(request, None)
        return None
    return await authenticate(request, credentials, verifier)


async def anonymous(request: Request) -> None:
    """Routes that need no token are still charged to the client's address."""
    await charge(request, None)


CurrentUser = Annotated[Principal, Depends(authenticate)]
Anonymous = Annotated[None, Depends(anonymous)]
MaybeUser = Annotated[Principal | None, Depends(authenticate_if_given)]
