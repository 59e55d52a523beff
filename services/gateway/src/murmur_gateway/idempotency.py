"""``Idempotency-Key`` on POST, after draft-ietf-httpapi-idempotency-key-header.

- The first request with a key runs; its response is stored for
  ``idempotency_ttl_seconds`` and replayed, byte for byte, to any retry with
  the same key and the same request (method, path, query and body), marked
  ``Idempotent-Replayed: true``.
- The same key with a different request is 422; a retry while the first is
  still running is 409 with ``Retry-After``.
- Keys are scoped per user (the bearer token's subject); a request whose token
  does not verify runs unkeyed and is refused by the route as usual.
- 5xx answers are not stored: the client may retry them with the same key.
- Without a working store the request runs unkeyed: every write it guards is
  idempotent by its own ids as well, so this costs dedupe, not correctness.

Plain ASGI, inside the body-size limit, so it reads bodies already bounded.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from collections.abc import Sequence
from typing import Any

import msgpack
from prometheus_client import Counter
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from murmur_core.auth import InvalidToken, TokenVerifier
from murmur_core.problems import problem_response
from murmur_gateway.idempotency_store import IdempotencyStore

log = logging.getLogger(__name__)

IDEMPOTENCY_REQUESTS = Counter(
    "murmur_gateway_idempotency_requests_total",
    "POSTs carrying an Idempotency-Key, by outcome "
    "(new, replayed, pending, mismatch, invalid, unavailable).",
    ["outcome"],
)
HEADER = b"idempotency-key"
# Printable ASCII without quotes or backslash: what a client library makes
# from a UUID or random token. The draft's sf-string form ("...") is accepted.
_KEY = re.compile(r"^[\x20\x21\x23-\x5b\x5d-\x7e]{1,255}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def parse_key(raw: str) -> str | None:
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value if _KEY.match(value) else None


class IdempotencyKeys:
    def __init__(
        self,
        app: ASGIApp,
        *,
        store: IdempotencyStore,
        verifier: TokenVerifier,
        ttl_seconds: float,
        lock_seconds: float,
    ) -> None:
        self.app = app
        self.store = store
        self.verifier = verifier
        self.ttl_ms = int(ttl_seconds * 1000)
        self.lock_ms = int(lock_seconds * 1000)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw_key = _header(scope, HEADER) if scope["type"] == "http" else None
        if raw_key is None or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        key = parse_key(raw_key)
        if key is None:
            IDEMPOTENCY_REQUESTS.labels("invalid").inc()
            response = problem_response(
                400,
                "invalid-idempotency-key",
                "Invalid Idempotency-Key",
                "Idempotency-Key must be 1-255 printable ASCII characters, optionally quoted",
            )
            await response(scope, receive, send)
            return
        user = self._user(scope)
        if user is None:
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        fingerprint = _fingerprint(scope, body)
        record_key = f"{user}:{hashlib.sha256(key.encode()).hexdigest()}"
        owner = secrets.token_hex(8)
        try:
            claim = await self.store.claim(record_key, fingerprint, owner, self.lock_ms)
        except (RedisError, OSError) as exc:
            IDEMPOTENCY_REQUESTS.labels("unavailable").inc()
            log.warning(
                "idempotency store failed; running unkeyed", extra={"error": type(exc).__name__}
            )
            await self.app(scope, _replay_body(body, receive), send)
            return
        IDEMPOTENCY_REQUESTS.labels("replayed" if claim.outcome == "done" else claim.outcome).inc()
        if claim.outcome == "done":
            await _send_stored(claim.response, send)
        elif claim.outcome == "pending":
            response = problem_response(
                409,
                "idempotency-key-in-use",
                "Request in progress",
                "a request with this Idempotency-Key is still being processed; retry later",
                headers={"Retry-After": "1"},
            )
            await response(scope, receive, send)
        elif claim.outcome == "mismatch":
            response = problem_response(
                422,
                "idempotency-key-reused",
                "Idempotency-Key reused",
                "this Idempotency-Key was used for a different request",
            )
            await response(scope, receive, send)
        else:
            await self._run_and_store(scope, _replay_body(body, receive), send, record_key, owner)

    def _user(self, scope: Scope) -> str | None:
        authorization = _header(scope, b"authorization") or ""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            return self.verifier.verify(token.strip()).user_id
        except InvalidToken:
            return None

    async def _run_and_store(
        self, scope: Scope, receive: Receive, send: Send, record_key: str, owner: str
    ) -> None:
        """Run the request, store its answer, then send it: a client that
        retries the moment it has the answer finds it stored (a retry must
        never see 409 for a request that has finished)."""
        status = 500
        headers: list[tuple[bytes, bytes]] = []
        held: list[Message] = []

        async def holding_send(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
            held.append(message)

        try:
            await self.app(scope, receive, holding_send)
        except BaseException:
            await self._forget(record_key, owner)
            raise
        if status >= 500:
            await self._forget(record_key, owner)
        else:
            body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
            stored = msgpack.packb([status, _stored_headers(headers), body])
            try:
                await self.store.complete(record_key, owner, stored, self.ttl_ms)
            except (RedisError, OSError) as exc:
                log.warning("idempotency record not stored", extra={"error": type(exc).__name__})
        for message in held:
            await send(message)

    async def _forget(self, record_key: str, owner: str) -> None:
        try:
            await self.store.release(record_key, owner)
        except (RedisError, OSError) as exc:
            log.warning("idempotency record not released", extra={"error": type(exc).__name__})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay_body(body: bytes, upstream: Receive) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        # After the body there is only the client's disconnect to wait for.
        return await upstream()

    return receive


def _fingerprint(scope: Scope, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (scope["method"].encode(), scope["path"].encode(), scope.get("query_string", b"")):
        digest.update(part)
        digest.update(b"\x00")
    digest.update(body)
    return digest.hexdigest()


# Per-request headers are not part of the stored response: a replay gets its own.
_NOT_STORED = frozenset({b"date", b"server", b"traceparent", b"content-length"})


def _stored_headers(headers: Sequence[tuple[bytes, bytes]]) -> list[list[bytes]]:
    return [[name, value] for name, value in headers if name.lower() not in _NOT_STORED]


async def _send_stored(stored: bytes, send: Send) -> None:
    status, headers, body = msgpack.unpackb(stored)
    out: list[Any] = [(bytes(n), bytes(v)) for n, v in headers]
    out.append((b"idempotent-replayed", b"true"))
    out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": bytes(body)})
