"""An ASGI app served by uvicorn inside the service's own event loop (needs
the ``http`` extra): started and stopped by the service, with signals left
to ``lifecycle``."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The process's signals are lifecycle's, not uvicorn's.
        yield


class EmbeddedHttpServer:
    def __init__(self, app: ASGIApp, host: str, port: int, *, grace_seconds: float) -> None:
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            lifespan="off",
            # Logging is configured already; uvicorn's own would undo it.
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=math.ceil(grace_seconds) + 1,
        )
        self._server = _Uvicorn(config)
        self._serving: asyncio.Task[None] | None = None
        self.port = 0

    async def start(self) -> int:
        """Listening when this returns; the bound port (``port=0`` picks one)."""
        serving = self._serving = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if serving.done():
                serving.result()  # raises why it could not start
                raise RuntimeError("the HTTP listener stopped while starting")
            await asyncio.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._serving is not None:
            self._server.should_exit = True
            await self._serving
