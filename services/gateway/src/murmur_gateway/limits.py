"""Request body size limit, as plain ASGI so it sees the byte stream itself.

Content-Length is checked before anything is read; the bytes actually received
are counted too, because chunked bodies declare no length.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from murmur_core.problems import problem_response


class BodyTooLarge(HTTPException):
    # FastAPI's own HTTPException: its body parser re-raises that class as is,
    # where any other error would become a generic 400.
    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            status_code=413, detail=f"the request body must be at most {max_bytes} bytes"
        )


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._refuse(scope, receive, send)
            return

        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            # Normally the app's handlers answer it; this covers a reader
            # outside them.
            if started:
                raise
            await self._refuse(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        # No "Connection: close": closing with the body unread makes the kernel
        # reset the connection, and a client still sending would lose this
        # answer. The server discards the rest of the body instead; the memory
        # the limit protects is never spent on it.
        response = problem_response(
            413, "content-too-large", "Content too large", BodyTooLarge(self.max_bytes).detail
        )
        await response(scope, receive, send)
