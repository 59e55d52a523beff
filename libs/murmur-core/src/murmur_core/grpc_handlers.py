"""One way for gRPC handlers to turn domain errors into status codes and to
honour the caller's deadline."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc

Request = TypeVar("Request")
Response = TypeVar("Response")
Context = grpc.aio.ServicerContext[Any, Any]
Method = Callable[[Any, Request, Context], Awaitable[Response]]
ErrorMap = Sequence[tuple[type[Exception], grpc.StatusCode]]


def mapped_errors(
    errors: ErrorMap,
) -> Callable[[Method[Request, Response]], Method[Request, Response]]:
    """Decorator for servicer methods: each exception type in ``errors`` aborts
    with its status code and the exception's message (which must be safe to
    show the caller); the call is cut at the caller's deadline."""

    def decorate(method: Method[Request, Response]) -> Method[Request, Response]:
        @functools.wraps(method)
        async def handle(self: Any, request: Request, context: Context) -> Response:
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline already passed")
            try:
                async with asyncio.timeout(remaining):
                    return await method(self, request, context)
            except TimeoutError:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")
            except Exception as exc:
                for error, code in errors:
                    if isinstance(exc, error):
                        await context.abort(code, str(exc))
                raise
            raise AssertionError("unreachable")  # abort() always raises

        return handle

    return decorate
