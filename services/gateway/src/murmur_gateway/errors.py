"""Exception handlers: whatever goes wrong, the client gets a problem document."""

from __future__ import annotations

import logging

import grpc
from fastapi import FastAPI, Request
from starlette.responses import Response

from murmur_core.problems import install_problem_handlers, problem_response, route_template
from murmur_gateway.convert import BadBackendReply

log = logging.getLogger(__name__)

# (HTTP status, slug, title) per gRPC status. Codes missing here mean the backend
# itself failed, which is not the client's doing: 502.
_GRPC_TO_HTTP: dict[grpc.StatusCode, tuple[int, str, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid-argument", "Invalid argument"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "out-of-range", "Out of range"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "unauthorized", "Unauthorized"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "forbidden", "Forbidden"),
    grpc.StatusCode.NOT_FOUND: (404, "not-found", "Not found"),
    grpc.StatusCode.ALREADY_EXISTS: (409, "conflict", "Conflict"),
    grpc.StatusCode.ABORTED: (409, "conflict", "Conflict"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "conflict", "Conflict"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "too-many-requests", "Too many requests"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "upstream-timeout", "Upstream timeout"),
    grpc.StatusCode.UNAVAILABLE: (503, "upstream-unavailable", "Upstream unavailable"),
}
_BAD_GATEWAY = (502, "bad-gateway", "Bad gateway")
_SERVER_DETAIL = {
    502: "the timeline service failed to answer the request",
    503: "the timeline service is unavailable; retry later",
    504: "the timeline service did not answer in time",
}


async def _grpc_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, grpc.aio.AioRpcError)
    code = exc.code()
    status, slug, title = _GRPC_TO_HTTP.get(code, _BAD_GATEWAY)
    if status < 500:
        # The timeline's messages are written for callers and never hold
        # request bodies, so the client can see them.
        detail = exc.details() or title
    else:
        detail = _SERVER_DETAIL.get(status, title)
        log.warning(
            "timeline call failed",
            extra={
                "grpc_code": code.name,
                "grpc_details": exc.details(),
                "route": route_template(request),
            },
        )
    # Every 401 carries the challenge (RFC 9110), whoever refused.
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return problem_response(status, slug, title, detail, headers=headers)


async def _bad_backend_reply(_: Request, exc: Exception) -> Response:
    log.error("timeline reply breaks the contract", extra={"error": str(exc)})
    status, slug, title = _BAD_GATEWAY
    return problem_response(status, slug, title, _SERVER_DETAIL[status])


def install_error_handlers(app: FastAPI) -> None:
    install_problem_handlers(app, "the gateway")
    app.add_exception_handler(grpc.aio.AioRpcError, _grpc_error)
    app.add_exception_handler(BadBackendReply, _bad_backend_reply)
