"""Bearer-token authentication: every /v1 route runs as the token's subject."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from murmur_core.auth import InvalidToken, Principal, TokenVerifier
from murmur_gateway.problems import ProblemError

# auto_error is off so that every refusal is our problem document with the
# RFC 6750 challenge, not FastAPI's default body.
_bearer = HTTPBearer(auto_error=False, bearerFormat="JWT")


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


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    verifier: Annotated[TokenVerifier, Depends(get_verifier)],
) -> Principal:
    if credentials is None:
        raise _unauthorized("a bearer token is required", token_given=False)
    try:
        principal = verifier.verify(credentials.credentials)
    except InvalidToken as exc:
        # The reason names what is wrong without quoting the token.
        raise _unauthorized(str(exc), token_given=True) from None
    sync = getattr(request.app.state, "cache_sync", None)
    if sync is not None:
        sync.seen(principal.user_id)
    return principal


CurrentUser = Annotated[Principal, Depends(authenticate)]
