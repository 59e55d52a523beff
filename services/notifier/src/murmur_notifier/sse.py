"""Server-sent events, for clients that cannot open a WebSocket (proxies
that strip the upgrade, constrained runtimes): ``GET /v1/events`` streams
the native protocol's server messages as ``text/event-stream``.

The differences from the WebSocket are what one-way HTTP imposes: the token
comes in the ``Authorization`` header (refused tokens are a 401 problem,
before any stream starts), the subscription in the query (``kinds``,
``authors`` comma-separated; ``after``), and a resume also from
``Last-Event-ID``, which ``EventSource`` sends by itself when it reconnects:
every record that moves the position carries it as its ``id``. A token
cannot be refreshed in place; it expires into a ``close`` event (4401), as
do the other server-initiated closes, with the same codes and reasons as the
WebSocket, and going away also sets the stream's ``retry`` to the jittered
delay. Everything else (routing, filters, resume, the bounded queue, the
too-slow rule, drain) is the native session's, unchanged."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request as WebSocketRequest

from murmur_core.auth import InvalidToken, Principal
from murmur_core.http import HttpObservability
from murmur_notifier import protocol
from murmur_notifier.connection import Connection, Services
from murmur_notifier.errors import ProtocolError
from murmur_notifier.outbox import Outgoing
from murmur_notifier.protocol import Subscribe
from murmur_notifier.session import Session

EVENTS_PATH = "/v1/events"
CLOSE_TIMEOUT_SECONDS = 2.0
MEDIA_TYPE = "text/event-stream"


class EventStream:
    """The channel of an SSE connection: what the session sends becomes
    event-stream records, handed one at a time to the HTTP response (so a
    slow client holds up only its own sender, as a WebSocket would)."""

    request: WebSocketRequest | None = None

    def __init__(self) -> None:
        self._records: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)
        self._gone = asyncio.Event()

    # The session's side

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self._no_client_messages()

    async def _no_client_messages(self) -> AsyncIterator[str | bytes]:
        await self._gone.wait()
        raise ConnectionClosed(None, None)
        yield b""  # pragma: no cover - makes this an async generator

    async def recv(self) -> str | bytes:
        await self._gone.wait()
        raise ConnectionClosed(None, None)

    async def send(self, message: bytes, *, text: bool | None = None) -> None:
        await self._put(message if message.startswith(b"id:") else _record(message))

    def ready_to_write(self) -> bool:
        # Records go through the response's queue: always the sender task.
        return False

    def write_now(self, message: bytes) -> None:
        raise RuntimeError("an event stream is written by its sender task")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        record = b"event: close\ndata: " + _json({"code": code, "reason": reason}) + b"\n\n"
        retry_after_ms = _field(reason, "retry_after_ms")
        if retry_after_ms is not None:
            record = b"retry: %d\n" % retry_after_ms + record
        # A client that stopped reading may never take the close record: the
        # session ends anyway after CLOSE_TIMEOUT_SECONDS, as a WebSocket's does.
        try:
            await self._put(record, within=CLOSE_TIMEOUT_SECONDS)
            await self._put(None, within=CLOSE_TIMEOUT_SECONDS)
        finally:
            self.hang_up()

    async def _put(self, record: bytes | None, within: float | None = None) -> None:
        if self._gone.is_set():
            raise ConnectionClosed(None, None)
        put = asyncio.ensure_future(self._records.put(record))
        gone = asyncio.ensure_future(self._gone.wait())
        await asyncio.wait((put, gone), timeout=within, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not put.done():
            put.cancel()
            raise ConnectionClosed(None, None)

    # The HTTP response's side

    async def records(self) -> AsyncIterator[bytes]:
        while (record := await self._records.get()) is not None:
            yield record
        self.hang_up()

    def hang_up(self) -> None:
        """The stream is over (closed by the session, or the client left)."""
        self._gone.set()


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _field(reason: str, name: str) -> int | None:
    if not reason.startswith("{"):
        return None
    value = json.loads(reason).get(name)
    return value if isinstance(value, int) else None


def _record(message: bytes) -> bytes:
    """A protocol message as a record; one that states a position (subscribed,
    caught_up, resync, heartbeat) carries it as the record's id."""
    seq = json.loads(message).get("seq")
    head = b"id: %d\n" % seq if isinstance(seq, int) else b""
    return head + b"data: " + message + b"\n\n"


class SseSession(Session):
    """The native session, authenticated and subscribed by the request."""

    PROTOCOL = "sse"

    def __init__(
        self, stream: EventStream, services: Services, principal: Principal, wanted: Subscribe
    ) -> None:
        super().__init__(stream, services)
        self._principal = principal
        self._wanted = wanted

    async def authenticate(self) -> Principal:
        return self._principal

    def welcome(self) -> None:
        super().welcome()
        self._subscribe(self._wanted)

    def frames(self, batch: list[Outgoing]) -> list[bytes]:
        frame = protocol.events_frame([item.encoded for item in batch])
        return [b"id: %d\ndata: " % batch[-1].delivery.seq + frame + b"\n\n"]


def _problem(status: int, title: str, detail: str, **headers: str) -> Response:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
        headers=headers,
    )


def _subscription(request: Request) -> Subscribe:
    query = request.query_params
    fields: dict[str, Any] = {}
    for name in ("kinds", "authors"):
        if name in query:
            fields[name] = [v for v in query[name].split(",") if v]
    after = request.headers.get("last-event-id") or query.get("after")
    if after is not None:
        if not after.isdigit():
            raise ProtocolError(protocol.Close.INVALID_MESSAGE, "after must be an integer >= 0")
        fields["after"] = int(after)
    return protocol.subscription(fields)


def create_sse_app(
    services: Services,
    *,
    accepting: Callable[[], bool],
    run: Callable[[Connection], Coroutine[Any, Any, None]],
) -> Starlette:
    """``run`` runs a session to its end (the server tracks it for drain)."""
    settings = services.settings
    sessions: set[asyncio.Task[None]] = set()

    async def events(request: Request) -> Response:
        if not accepting():
            retry = str(int(settings.retry_after_seconds) or 1)
            return _problem(503, "Draining", "reconnect elsewhere", **{"Retry-After": retry})
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _problem(
                401,
                "Unauthorized",
                "send Authorization: Bearer <token>",
                **{"WWW-Authenticate": "Bearer"},
            )
        try:
            principal = services.verifier.verify(token)
        except InvalidToken as exc:
            return _problem(401, "Unauthorized", str(exc), **{"WWW-Authenticate": "Bearer"})
        try:
            wanted = _subscription(request)
        except ProtocolError as exc:
            return _problem(400, "Invalid subscription", exc.reason)
        stream = EventStream()
        session = SseSession(stream, services, principal, wanted)
        task = asyncio.create_task(run(session))
        sessions.add(task)
        task.add_done_callback(sessions.discard)

        async def body() -> AsyncIterator[bytes]:
            try:
                async for record in stream.records():
                    yield record
            finally:
                # Also when the client left: the session then ends as on a
                # dropped socket (no await here: this may run cancelled).
                stream.hang_up()

        return StreamingResponse(
            body(),
            media_type=MEDIA_TYPE,
            # No proxy may buffer or transform the stream.
            headers={"Cache-Control": "no-store, no-transform", "X-Accel-Buffering": "no"},
        )

    app = Starlette(routes=[Route(EVENTS_PATH, events, methods=["GET"])])
    # The same span and RED metrics as every HTTP route (one span a stream).
    app.add_middleware(HttpObservability)
    return app
