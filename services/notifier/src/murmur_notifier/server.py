"""Assembles the notifier: the WebSocket listener (with ``/healthz`` and
``/readyz`` on the same port) speaking ``murmur.v1`` (session.py) or
``graphql-transport-ws`` (graphql_ws/), NATS, interest routing, presence and metrics;
stops by draining: refuse new connections, tell open ones to reconnect
elsewhere after what is queued, then close."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Sequence
from http import HTTPStatus
from typing import cast

from nats.aio.client import Client as NatsClient
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from murmur_core import nats as murmur_nats
from murmur_core.admin import AdminEndpoints
from murmur_core.embedded_http import EmbeddedHttpServer
from murmur_core.metrics import MetricsListener, start_metrics_listener
from murmur_notifier import metrics, protocol
from murmur_notifier.connection import Connection, Services
from murmur_notifier.graphql_ws import messages as graphql_messages
from murmur_notifier.graphql_ws.session import GraphqlConnection
from murmur_notifier.outbox import FlushSchedule
from murmur_notifier.presence import Presence
from murmur_notifier.router import Router
from murmur_notifier.session import Session
from murmur_notifier.settings import NotifierSettings
from murmur_notifier.sse import SseSession, create_sse_app

log = logging.getLogger(__name__)

WEBSOCKET_PATH = "/v1/ws"


class NotifierServer:
    def __init__(
        self,
        settings: NotifierSettings,
        nc: NatsClient,
        services: Services,
        sessions: set[Connection],
    ) -> None:
        self.settings = settings
        self.port = 0
        self.sse_port = 0
        self._nc = nc
        self._services = services
        # Shared with the NATS hooks, which exist before this object does.
        self._sessions = sessions
        self._accepting = True
        self._server: Server | None = None
        self._sse: EmbeddedHttpServer | None = None
        self._presence: Presence | None = None
        self._metrics: MetricsListener | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    async def start(cls, settings: NotifierSettings) -> NotifierServer:
        verifier = settings.token_verifier()
        metrics.start_series((Session.PROTOCOL, GraphqlConnection.PROTOCOL, SseSession.PROTOCOL))
        sessions: set[Connection] = set()

        async def disconnected() -> None:
            # Core NATS keeps nothing for an absent subscriber, and a server
            # that cut this one off as a slow consumer dropped what was
            # pending: every client resumes from JetStream. Sent away now, at
            # the disconnect: a live event after the gap must not move any
            # position past it (what is already queued is still flushed).
            metrics.NATS_DISCONNECTS.inc()
            log.warning("nats disconnected: every connection resumes", extra={"n": len(sessions)})
            for session in list(sessions):
                session.go_away()

        nc = await murmur_nats.connect(
            settings.nats_url,
            name="notifier",
            on_disconnect=disconnected,
        )
        router = Router(nc)
        services = Services(
            settings,
            verifier,
            router,
            nc.jetstream(),
            FlushSchedule(settings.coalesce_seconds),
            asyncio.Semaphore(settings.replay_concurrency),
        )
        server = cls(settings, nc, services, sessions)
        if settings.cache_addr:
            presence = server._presence = Presence(settings, router)
            router.on_join = presence.joined
            server._tasks.append(asyncio.create_task(presence.refresh_forever()))
        if settings.metrics_port:
            server._metrics = start_metrics_listener(
                settings.metrics_port, admin=AdminEndpoints(settings.admin_token)
            )
        server._server = await serve(
            server._handle,
            settings.host,
            settings.port,
            process_request=server._process_request,
            select_subprotocol=_select_subprotocol,
            create_connection=_ServerConnection,
            max_size=settings.max_client_message_bytes,
            # Incoming messages buffered before reading pauses: well above
            # what the flood limit lets through, so a connection closed for
            # flooding still reads the peer's close reply and ends at once.
            max_queue=1024,
            close_timeout=2.0,
            ping_interval=settings.heartbeat_seconds,
            ping_timeout=settings.heartbeat_seconds,
            # Per-message deflate would cost every frame CPU; events are small.
            compression=None,
        )
        server.port = next(iter(server._server.sockets)).getsockname()[1]
        if settings.sse_port:
            await server._start_sse()
        log.info("notifier listening", extra={"port": server.port, "sse_port": server.sse_port})
        return server

    async def _start_sse(self) -> None:
        app = create_sse_app(
            self._services, accepting=lambda: self._accepting, run=self._run_session
        )
        sse = self._sse = EmbeddedHttpServer(
            app,
            self.settings.host,
            self.settings.sse_port,
            grace_seconds=self.settings.shutdown_grace_seconds,
        )
        self.sse_port = await sse.start()

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            ready = self._accepting and self._nc.is_connected
            status = HTTPStatus.OK if ready else HTTPStatus.SERVICE_UNAVAILABLE
            return connection.respond(status, "ready\n" if ready else "not ready\n")
        if path != WEBSOCKET_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        if not self._accepting:
            response = connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "draining\n")
            response.headers["Retry-After"] = str(int(self.settings.retry_after_seconds) or 1)
            return response
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        # serve() makes every connection with create_connection=_ServerConnection.
        ws = cast(_ServerConnection, connection)
        if self.settings.send_buffer_bytes:
            sock = ws.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.send_buffer_bytes
                )
        session: Connection
        if ws.subprotocol == graphql_messages.SUBPROTOCOL:
            session = GraphqlConnection(ws, self._services)
        else:
            session = Session(ws, self._services)
        await self._run_session(session)

    async def _run_session(self, session: Connection) -> None:
        self._sessions.add(session)
        try:
            await session.run()
        finally:
            self._sessions.discard(session)

    async def stop(self) -> None:
        self._accepting = False
        # Readiness fails first, so load balancers stop sending clients here.
        await asyncio.sleep(self.settings.shutdown_drain_seconds)
        for session in list(self._sessions):
            session.go_away()
        deadline = asyncio.get_running_loop().time() + self.settings.shutdown_grace_seconds
        while self._sessions and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        if self._sse is not None:
            await self._sse.stop()
        for task in self._tasks:
            task.cancel()
        if self._metrics is not None:
            await asyncio.to_thread(self._metrics.close)
        if self._presence is not None:
            await self._presence.close()
        with contextlib.suppress(Exception):
            await self._nc.drain()


class _ServerConnection(ServerConnection):
    """websockets' server connection, freed by reference counting once closed.

    Two reference cycles of websockets 17 would otherwise leave every closed
    connection, its buffers and everything reachable from it to the cyclic
    collector; a thousand closed connections made full collections that
    stopped the loop for over 100 ms (docs/notifier.md, Measured):

    - the subprotocol selector ``serve`` gives each connection's protocol is
      a closure over the connection;
    - a connection cut without a closing handshake keeps the parser's error
      on the protocol, and the error's traceback holds the parser's frame,
      which holds the protocol.

    Once the TCP connection is lost the selector is not asked again, and the
    error keeps its type and message (what a close reports), not the frames.
    """

    def ready_to_write(self) -> bool:
        return (
            not self.paused
            and self.protocol.state is State.OPEN
            and not self.transport.is_closing()
        )

    def write_now(self, message: bytes) -> None:
        """A text frame written straight to the transport: a server's frames
        are not masked and compression is off, so the frame is a header and
        the message, with none of ``send``'s awaits (docs/notifier.md)."""
        size = len(message)
        if size < 126:
            header = bytes((0x81, size))
        elif size < 1 << 16:
            header = b"\x81\x7e" + size.to_bytes(2, "big")
        else:
            header = b"\x81\x7f" + size.to_bytes(8, "big")
        self.transport.write(header + message)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        protocol = self.protocol
        with contextlib.suppress(AttributeError):
            del protocol.select_subprotocol  # back to the class's own
        if protocol.parser_exc is not None:
            protocol.parser_exc.__traceback__ = None


def _select_subprotocol(
    connection: ServerConnection, subprotocols: Sequence[Subprotocol]
) -> Subprotocol | None:
    # The native protocol when offered; no subprotocol at all is native too.
    for name in (protocol.SUBPROTOCOL, graphql_messages.SUBPROTOCOL):
        if name in subprotocols:
            return Subprotocol(name)
    return None
